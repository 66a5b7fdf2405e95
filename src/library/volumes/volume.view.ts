import { isoOf, numberOf, numberOrNull } from '../http/json-values';

/** A volume as the API shows it: the same JSON on every device. */
export interface VolumeView {
  id: string;
  deviceId: string;
  name: string;
  mountPoint: string;
  capacityBytes: number;
  freeBytes: number | null;
  updatedAt: string;
}

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
