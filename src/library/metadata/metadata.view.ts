/** An entry's user metadata as the API shows it. */
export interface MetadataView {
  entryId: string;
  favorite: boolean;
  hidden: boolean;
  notes: string | null;
}

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
