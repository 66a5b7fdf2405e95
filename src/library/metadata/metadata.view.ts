import { z } from 'zod';
import { idValue } from '../http/json-values';

/** An entry's user metadata as the API shows it. */
export const metadataViewSchema = z
  .object({ entryId: idValue, favorite: z.boolean(), hidden: z.boolean(), notes: z.string().nullable() })
  .strict();
export type MetadataView = z.infer<typeof metadataViewSchema>;

/** Metadata of an entry nobody has annotated yet. */
export const NO_METADATA = { favorite: false, hidden: false, notes: null };

export function metadataView(entryId: string, values: Record<string, unknown>): MetadataView {
  return {
    entryId,
    favorite: values.favorite === true,
    hidden: values.hidden === true,
    notes: (values.notes as string | null) ?? null,
  };
}
