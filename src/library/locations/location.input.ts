import { z } from 'zod';
import { canonicalUuid, name, path, uuid } from '../http/validation';

/** POST /locations and PATCH /locations/:id bodies (docs/http.md). */
const fields = {
  name,
  path,
  volumeId: uuid.nullable(),
};

export const createLocationInput = z
  .object({ id: uuid.optional(), ...fields, volumeId: fields.volumeId.optional() })
  .strict();
export type CreateLocationInput = z.output<typeof createLocationInput>;

export const patchLocationInput = z.object(fields).partial().strict();
export type PatchLocationInput = z.output<typeof patchLocationInput>;

/** Body fields as the locations table's columns. */
export function locationColumns(input: Partial<Omit<CreateLocationInput, 'id'>>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  if (input.name !== undefined) out.name = input.name;
  if (input.path !== undefined) out.path = input.path;
  if (input.volumeId !== undefined) out.volume_id = canonicalUuid(input.volumeId);
  return out;
}
