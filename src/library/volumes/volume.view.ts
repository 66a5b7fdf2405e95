import { z } from 'zod';
import { bytesValue, idValue, isoOf, numberOf, numberOrNull, timestampValue } from '../http/json-values';

/** A volume as the API shows it: the same JSON on every device. */
export const volumeViewSchema = z
  .object({
    id: idValue,
    deviceId: idValue,
    name: z.string(),
    mountPoint: z.string(),
    capacityBytes: bytesValue,
    freeBytes: bytesValue.nullable(),
    updatedAt: timestampValue,
  })
  .strict();
export type VolumeView = z.infer<typeof volumeViewSchema>;

export function volumeView(row: Record<string, unknown>): VolumeView {
  return {
    id: row.id as string,
    deviceId: row.device_id as string,
    name: row.name as string,
    mountPoint: row.mount_point as string,
    capacityBytes: numberOf(row.capacity_bytes),
    freeBytes: numberOrNull(row.free_bytes),
    updatedAt: isoOf(row.updated_at),
  };
}
