import { isoOf } from '../http/json-values';

/** A location (an indexed folder) as the API shows it: the same JSON on every device. */
export interface LocationView {
  id: string;
  deviceId: string;
  volumeId: string | null;
  name: string;
  path: string;
  updatedAt: string;
}

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
