import { isoOf, numberOf } from '../http/json-values';

/** An entry (a file or folder of a location) as the API shows it: the same JSON on every device. */
export interface EntryView {
  id: string;
  deviceId: string;
  locationId: string;
  name: string;
  path: string;
  kind: 'file' | 'dir';
  sizeBytes: number;
  modifiedAt: string;
  updatedAt: string;
}

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
