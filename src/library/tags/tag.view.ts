import { z } from 'zod';
import { idValue } from '../http/json-values';

/** A tag as the API shows it. */
export const tagViewSchema = z.object({ id: idValue, name: z.string(), color: z.string().nullable() }).strict();
export type TagView = z.infer<typeof tagViewSchema>;

export function tagView(id: string, values: Record<string, unknown>): TagView {
  return { id, name: values.name as string, color: (values.color as string | null) ?? null };
}
