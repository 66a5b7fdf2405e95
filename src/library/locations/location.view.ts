import { z } from 'zod';
import { idValue, isoOf, timestampValue } from '../http/json-values';

/** A location (an indexed folder) as the API shows it: the same JSON on every device. */
export const locationViewSchema = z
  .object({
    id: idValue,
    deviceId: idValue,
    volumeId: idValue.nullable(),
    name: z.string(),
    path: z.string(),
    updatedAt: timestampValue,
  })
  .strict();
export type LocationView = z.infer<typeof locationViewSchema>;

export function locationView(row: Record<string, unknown>): LocationView {
  return {
    id: row.id as string,
    deviceId: row.device_id as string,
    volumeId: (row.volume_id as string | null) ?? null,
    name: row.name as string,
    path: row.path as string,
    updatedAt: isoOf(row.updated_at),
  };
}
