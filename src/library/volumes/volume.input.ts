import { z } from 'zod';
import { bytes, name, path, uuid } from '../http/validation';

/** POST /volumes and PATCH /volumes/:id bodies (docs/http.md). */
const fields = {
  name,
  mountPoint: path,
  capacityBytes: bytes,
  freeBytes: bytes.nullable(),
};

export const createVolumeInput = z
  .object({ id: uuid.optional(), ...fields, freeBytes: fields.freeBytes.optional() })
  .strict();
export type CreateVolumeInput = z.output<typeof createVolumeInput>;

export const patchVolumeInput = z.object(fields).partial().strict();
export type PatchVolumeInput = z.output<typeof patchVolumeInput>;

/** Body fields as the volumes table's columns. */
export function volumeColumns(input: Partial<Omit<CreateVolumeInput, 'id'>>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  if (input.name !== undefined) out.name = input.name;
  if (input.mountPoint !== undefined) out.mount_point = input.mountPoint;
  if (input.capacityBytes !== undefined) out.capacity_bytes = input.capacityBytes;
  if (input.freeBytes !== undefined) out.free_bytes = input.freeBytes;
  return out;
}
