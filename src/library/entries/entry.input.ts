import { z } from 'zod';
import { bytes, canonicalTimestamp, canonicalUuid, fileName, isoDateTime, path, uuid } from '../http/validation';

/** POST /entries, POST /entries/batch and PATCH /entries/:id bodies (API.md). */

/** The most entries one batch may carry (one transaction). */
export const MAX_BATCH = 10_000;

const fields = {
  locationId: uuid,
  name: fileName,
  path,
  kind: z.enum(['file', 'dir']),
  sizeBytes: bytes,
  modifiedAt: isoDateTime,
};

export const createEntryInput = z.object({ id: uuid.optional(), ...fields }).strict();
export type CreateEntryInput = z.output<typeof createEntryInput>;

export const entryBatchInput = z
  .object({ items: z.array(createEntryInput).max(MAX_BATCH, `at most ${MAX_BATCH} entries per batch`) })
  .strict();
export type EntryBatchInput = z.output<typeof entryBatchInput>;

export const patchEntryInput = z.object(fields).partial().strict();
export type PatchEntryInput = z.output<typeof patchEntryInput>;

/** Body fields as the entries table's columns. */
export function entryColumns(input: Partial<Omit<CreateEntryInput, 'id'>>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  if (input.locationId !== undefined) out.location_id = canonicalUuid(input.locationId);
  if (input.name !== undefined) out.name = input.name;
  if (input.path !== undefined) out.path = input.path;
  if (input.kind !== undefined) out.kind = input.kind;
  if (input.sizeBytes !== undefined) out.size_bytes = input.sizeBytes;
  if (input.modifiedAt !== undefined) out.modified_at = canonicalTimestamp(input.modifiedAt);
  return out;
}
