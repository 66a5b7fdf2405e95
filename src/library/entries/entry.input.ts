import { z } from 'zod';
import {
  bytes,
  canonicalTimestamp,
  canonicalUuid,
  fileName,
  isoDateTime,
  MAX_NAME,
  MAX_PATH,
  parseInput,
  path,
  STORABLE,
  uuid,
  ZOD_UUID,
} from '../http/validation';

/** POST /entries, POST /entries/batch and PATCH /entries/:id bodies (docs/http.md). */

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

const ENTRY_KEYS = new Set(['id', 'locationId', 'name', 'path', 'kind', 'sizeBytes', 'modifiedAt']);
/** zod's own date-time pattern for `datetime({ offset: true })`, built once instead of per value. */
const DATE_TIME = z.datetimeRegex({ offset: true, precision: null, local: false });
const NON_BLANK = /\S/;

/**
 * Whether zod would accept `item` as a createEntryInput unchanged: the same checks, done without
 * zod's per-value overhead (a batch holds 10,000 items). It only ever says yes to what zod accepts
 * (see the unit test); anything else goes to zod, which names the field.
 */
export function isPlainValidEntry(item: unknown): boolean {
  if (typeof item !== 'object' || item === null || Array.isArray(item)) return false;
  const e = item as Record<string, unknown>;
  let keys = 0;
  for (const k in e) {
    if (!Object.prototype.hasOwnProperty.call(e, k) || !ENTRY_KEYS.has(k)) return false;
    keys++;
  }
  if (keys !== (e.id === undefined ? 6 : 7)) return false;
  const { id, locationId, name, path, kind, sizeBytes, modifiedAt } = e;
  return (
    (id === undefined || (typeof id === 'string' && ZOD_UUID.test(id))) &&
    typeof locationId === 'string' &&
    ZOD_UUID.test(locationId) &&
    typeof name === 'string' &&
    name.length >= 1 &&
    name.length <= MAX_NAME &&
    NON_BLANK.test(name) &&
    STORABLE.test(name) &&
    typeof path === 'string' &&
    path.length >= 1 &&
    path.length <= MAX_PATH &&
    STORABLE.test(path) &&
    (kind === 'file' || kind === 'dir') &&
    typeof sizeBytes === 'number' &&
    Number.isSafeInteger(sizeBytes) &&
    sizeBytes >= 0 &&
    typeof modifiedAt === 'string' &&
    DATE_TIME.test(modifiedAt)
  );
}

function allPlainValid(items: readonly unknown[]): boolean {
  for (let i = 0; i < items.length; i++) if (!isPlainValidEntry(items[i])) return false;
  return true;
}

/** POST /entries/batch: the fast checks when every item passes them, zod (and its 400) otherwise. */
export function parseEntryBatch(body: unknown): EntryBatchInput {
  if (typeof body === 'object' && body !== null && !Array.isArray(body)) {
    const keys = Object.keys(body);
    const items = (body as { items?: unknown }).items;
    if (
      keys.length === 1 &&
      keys[0] === 'items' &&
      Array.isArray(items) &&
      items.length <= MAX_BATCH &&
      allPlainValid(items)
    ) {
      return { items: items as CreateEntryInput[] };
    }
  }
  return parseInput(entryBatchInput, body);
}

export const patchEntryInput = z.object(fields).partial().strict();
export type PatchEntryInput = z.output<typeof patchEntryInput>;

/** Body fields as the entries table's columns (added to `out`). */
export function entryColumns(
  input: Partial<Omit<CreateEntryInput, 'id'>>,
  out: Record<string, unknown> = {},
): Record<string, unknown> {
  if (input.locationId !== undefined) out.location_id = canonicalUuid(input.locationId);
  if (input.name !== undefined) out.name = input.name;
  if (input.path !== undefined) out.path = input.path;
  if (input.kind !== undefined) out.kind = input.kind;
  if (input.sizeBytes !== undefined) out.size_bytes = input.sizeBytes;
  if (input.modifiedAt !== undefined) out.modified_at = canonicalTimestamp(input.modifiedAt);
  return out;
}
