import { ConflictError, ENTRIES, InvalidInputError, LOCATIONS, OwnedRow, OwnedWrite } from '@lib/sync';
import { conflictOf, ContentColumns, deletedConflict, deletedOwnedIds, findOwnedRows } from '../owned/owned-create';
import { requireOwnReferences } from '../owned/owned-references';

export const ENTRY_CONTENT: ContentColumns = {
  location_id: 'text',
  name: 'text',
  path: 'text',
  kind: 'text',
  size_bytes: 'number',
  modified_at: 'timestamp',
};

export type EntryRow = Record<string, unknown> & { id: string; location_id: string };

/** A batch may not name one id twice (400 naming the second item). */
export function rejectRepeatedIds(rows: readonly EntryRow[]): void {
  const first = new Map<string, number>();
  rows.forEach((r, i) => {
    const prev = first.get(r.id);
    if (prev !== undefined) throw new InvalidInputError(`items[${i}].id`, `repeats the id of items[${prev}]`);
    first.set(r.id, i);
  });
}

/**
 * Writes a batch of entries in the caller's transaction, all or none, with a constant number of
 * queries: one for the locations, two for the ids already known, then the upsert (chunked by the
 * writer). Items whose id exists with the same content are repeats; any other use of a known id is
 * a conflict for the whole batch. Returns the stored rows in item order and how many are new.
 */
export async function writeEntryBatch(
  w: OwnedWrite,
  rows: readonly EntryRow[],
  clientIds: readonly string[],
): Promise<{ rows: OwnedRow[]; created: number }> {
  const deleted = await deletedOwnedIds(w, ENTRIES, clientIds);
  const existing = await findOwnedRows(w, ENTRIES, clientIds);
  const out: OwnedRow[] = new Array(rows.length);
  const fresh: EntryRow[] = [];
  const freshAt: number[] = [];
  const locationFirstUse = new Map<string, number>();
  rows.forEach((row, i) => {
    if (deleted.has(row.id)) throw new ConflictError(`items[${i}].id: ${deletedConflict(ENTRIES, row.id)}`);
    const known = existing.get(row.id);
    if (known) {
      const conflict = conflictOf(ENTRIES, known, row, ENTRY_CONTENT, w.deviceId);
      if (conflict) throw new ConflictError(`items[${i}].id: ${conflict}`);
      out[i] = known;
      return;
    }
    if (!locationFirstUse.has(row.location_id)) locationFirstUse.set(row.location_id, i);
    fresh.push(row);
    freshAt.push(i);
  });
  await requireOwnReferences(
    w,
    LOCATIONS,
    new Set(locationFirstUse.keys()),
    (id) => `items[${locationFirstUse.get(id)}].locationId`,
  );
  const stored = await w.upsert(ENTRIES, fresh);
  stored.forEach((row, k) => (out[freshAt[k]] = row));
  return { rows: out, created: stored.length };
}
