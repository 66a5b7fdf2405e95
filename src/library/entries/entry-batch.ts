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
 * queries. Optimistic: the rows are inserted where their id is free, and only when some id was
 * taken are those rows read: items whose id exists with the same content are repeats; any other
 * use of a known id (or of a deleted one) is a conflict for the whole batch. Returns the stored rows
 * in item order and how many are new.
 */
export async function writeEntryBatch(
  w: OwnedWrite,
  rows: readonly EntryRow[],
  clientIds: readonly string[],
): Promise<{ rows: OwnedRow[]; created: number }> {
  const { rows: stamped, inserted } = await w.insertNew(ENTRIES, rows);
  // some id was deleted or taken already (a server-made id never is): find out which
  let existing = new Map<string, OwnedRow>();
  if (inserted < rows.length) {
    const deleted = await deletedOwnedIds(w, ENTRIES, clientIds);
    rows.forEach((row, i) => {
      if (deleted.has(row.id)) throw new ConflictError(`items[${i}].id: ${deletedConflict(ENTRIES, row.id)}`);
    });
    existing = await findOwnedRows(w, ENTRIES, clientIds, w.version);
  }
  const out: OwnedRow[] = new Array(rows.length);
  const locationFirstUse = new Map<string, number>();
  rows.forEach((row, i) => {
    const known = existing.get(row.id);
    if (known) {
      const conflict = conflictOf(ENTRIES, known, row, ENTRY_CONTENT, w.deviceId);
      if (conflict) throw new ConflictError(`items[${i}].id: ${conflict}`);
      out[i] = known;
      return;
    }
    if (!locationFirstUse.has(row.location_id)) locationFirstUse.set(row.location_id, i);
    out[i] = stamped[i];
  });
  // checked after the insert (which the rollback undoes): a location must be ours and is locked
  // until commit, so a concurrent delete of it either sees these entries or makes this fail
  await requireOwnReferences(
    w,
    LOCATIONS,
    new Set(locationFirstUse.keys()),
    (id) => `items[${locationFirstUse.get(id)}].locationId`,
  );
  return { rows: out, created: inserted };
}
