import { z } from 'zod';
import { name, text, uuid } from '../http/validation';

/** POST /albums and PATCH /albums/:id bodies (docs/http.md). */
const fields = {
  name,
  description: text(10_000).nullable(),
};

export const createAlbumInput = z
  .object({ id: uuid.optional(), ...fields, description: fields.description.optional() })
  .strict();
export type CreateAlbumInput = z.output<typeof createAlbumInput>;

export const patchAlbumInput = z.object(fields).partial().strict();
export type PatchAlbumInput = z.output<typeof patchAlbumInput>;
