/** An album as the API shows it. */
export interface AlbumView {
  id: string;
  name: string;
  description: string | null;
}

export function albumView(id: string, values: Record<string, unknown>): AlbumView {
  return { id, name: values.name as string, description: (values.description as string | null) ?? null };
}
