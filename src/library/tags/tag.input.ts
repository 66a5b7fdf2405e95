import { z } from 'zod';
import { name, text, uuid } from '../http/validation';

/** POST /tags and PATCH /tags/:id bodies (docs/http.md). */
const fields = {
  name,
  color: text(100).trim().min(1, 'must not be empty (use null for none)').nullable(),
};

export const createTagInput = z.object({ id: uuid.optional(), ...fields, color: fields.color.optional() }).strict();
export type CreateTagInput = z.output<typeof createTagInput>;

export const patchTagInput = z.object(fields).partial().strict();
export type PatchTagInput = z.output<typeof patchTagInput>;
