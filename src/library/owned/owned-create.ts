import { sql } from 'kysely';
import { ConflictError, OwnedModel, OwnedRow, OwnedWrite } from '@lib/sync';
import { isoOf, numberOf } from '../http/json-values';

/**
 * The idempotent create of device-owned rows (docs/http.md): a new id is written; an id this device
 * already holds with the same content is the same create repeated; anything else under that id
 * (another owner, other content, a deleted row) is a conflict.
 */

export interface CreateResult {
  row: OwnedRow;
  created: boolean;
}

/** The content columns a create sets, with the way each compares. */
export type ContentColumns = Readonly<Record<string, 'text' | 'number' | 'timestamp'>>;

function normalised(kind: 'text' | 'number' | 'timestamp', v: unknown): unknown {
  if (v === null || v === undefined) return null;
  if (kind === 'number') return numberOf(v);
  if (kind === 'timestamp') return isoOf(v);
  return v;
}

/** Whether the stored row holds exactly the content of the create. */
export function sameContent(
  stored: Record<string, unknown>,
  wanted: Record<string, unknown>,
  columns: ContentColumns,
): boolean {
  return Object.entries(columns).every(([c, kind]) => normalised(kind, stored[c]) === normalised(kind, wanted[c]));
}

/** Why an existing id refuses this create, or null when the create is a repeat. */
export function conflictOf(
  model: OwnedModel,
  existing: OwnedRow,
  wanted: Record<string, unknown>,
  columns: ContentColumns,
  self: string,
): string | null {
  if (existing.device_id !== self)
    return `${model.name} ${existing.id} already exists, owned by device ${existing.device_id}`;
  if (!sameContent(existing, wanted, columns))
    return `${model.name} ${existing.id} already exists with different content`;
  return null;
}

export const deletedConflict = (model: OwnedModel, id: string): string =>
  `${model.name} ${id} was deleted; ids are never reused`;

/** Creates one row, or recognises the repeat of its create; `beforeInsert` checks a new row's references. */
export async function createOwnedRow(
  w: OwnedWrite,
  model: OwnedModel,
  row: Record<string, unknown> & { id: string },
  columns: ContentColumns,
  beforeInsert?: () => Promise<unknown>,
): Promise<CreateResult> {
  // optimistic: the insert is the check (its rollback undoes it when a check below fails)
  const {
    rows: [stored],
    inserted,
  } = await w.insertNew(model, [row]);
  if (inserted === 0) {
    if (await w.isDeleted(model, row.id)) throw new ConflictError(deletedConflict(model, row.id));
    const existing = await w.find(model, row.id);
    if (!existing) throw new Error(`${model.name} ${row.id} was neither inserted nor found`);
    const conflict = conflictOf(model, existing, row, columns, w.deviceId);
    if (conflict) throw new ConflictError(conflict);
    return { row: existing, created: false };
  }
  await beforeInsert?.();
  return { row: stored, created: true };
}

/**
 * The rows of `ids` that exist (any owner), by id, locked until commit: one query whatever the
 * number of ids. `notVersion` leaves out the rows of that version (this write's own).
 */
export async function findOwnedRows(
  w: OwnedWrite,
  model: OwnedModel,
  ids: readonly string[],
  notVersion?: string,
): Promise<Map<string, OwnedRow>> {
  if (ids.length === 0) return new Map();
  const others = notVersion === undefined ? sql`` : sql`and version <> ${notVersion}`;
  const res = await sql<OwnedRow>`select * from ${sql.table(model.table)}
    where id in (select jsonb_array_elements_text(${JSON.stringify(ids)}::jsonb)::uuid) ${others} for update`.execute(
    w.tx,
  );
  return new Map(res.rows.map((r) => [r.id, r]));
}

/** The ids among `ids` that were deleted (tombstoned), in one query. */
export async function deletedOwnedIds(w: OwnedWrite, model: OwnedModel, ids: readonly string[]): Promise<Set<string>> {
  if (ids.length === 0) return new Set();
  const res = await sql<{ id: string }>`select id from owned_tombstones where model = ${model.name}
    and id in (select jsonb_array_elements_text(${JSON.stringify(ids)}::jsonb)::uuid)`.execute(w.tx);
  return new Set(res.rows.map((r) => r.id));
}
