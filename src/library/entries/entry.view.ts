import { z } from 'zod';
import { bytesValue, idValue, isoOf, numberOf, timestampValue } from '../http/json-values';

/** An entry (a file or folder of a location) as the API shows it: the same JSON on every device. */
export const entryViewSchema = z
  .object({
    id: idValue,
    deviceId: idValue,
    locationId: idValue,
    name: z.string(),
    path: z.string(),
    kind: z.enum(['file', 'dir']),
    sizeBytes: bytesValue,
    modifiedAt: timestampValue,
    updatedAt: timestampValue,
  })
  .strict();
export type EntryView = z.infer<typeof entryViewSchema>;

/** POST /entries/batch's answer: the entries in item order, and how many were new. */
export const entryBatchViewSchema = z
  .object({ items: z.array(entryViewSchema), created: z.number().int().nonnegative() })
  .strict();

export function entryView(row: Record<string, unknown>): EntryView {
  return {
    id: row.id as string,
    deviceId: row.device_id as string,
    locationId: row.location_id as string,
    name: row.name as string,
    path: row.path as string,
    kind: row.kind as 'file' | 'dir',
    sizeBytes: numberOf(row.size_bytes),
    modifiedAt: isoOf(row.modified_at),
    updatedAt: isoOf(row.updated_at),
  };
}
