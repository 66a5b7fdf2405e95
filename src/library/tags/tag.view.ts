/** A tag as the API shows it. */
export interface TagView {
  id: string;
  name: string;
  color: string | null;
}

export function tagView(id: string, values: Record<string, unknown>): TagView {
  return { id, name: values.name as string, color: (values.color as string | null) ?? null };
}
