import { z } from 'zod';
import { idValue } from '../http/json-values';

/** An album as the API shows it. */
export const albumViewSchema = z.object({ id: idValue, name: z.string(), description: z.string().nullable() }).strict();
export type AlbumView = z.infer<typeof albumViewSchema>;

export function albumView(id: string, values: Record<string, unknown>): AlbumView {
  return { id, name: values.name as string, description: (values.description as string | null) ?? null };
}
