/**
 * Position in an owner's stream of owned changes: (version, kind, id), where kind is the model's
 * dependency order for rows and TOMBSTONE_KIND for deletes. Encoded as fixed-width text so that
 * comparing the strings compares the tuples; it doubles as a peer's state watermark for that owner.
 */
export interface OwnedCursor {
  version: string;
  kind: number;
  id: string;
}

export const TOMBSTONE_KIND = 9;

export function encodeCursor(c: OwnedCursor): string {
  return `${c.version}|${c.kind}|${c.id}`;
}

export function decodeCursor(text: string): OwnedCursor {
  const m = /^(\d{15}-\d{6}-[0-9a-f-]{36})\|(\d)\|([0-9a-f-]{36})$/.exec(text);
  if (!m) throw new Error(`not an owned cursor: "${text}"`);
  return { version: m[1], kind: Number(m[2]), id: m[3] };
}

export function isCursorText(text: unknown): text is string {
  return typeof text === 'string' && /^\d{15}-\d{6}-[0-9a-f-]{36}\|\d\|[0-9a-f-]{36}$/.test(text);
}

export function compareCursor(a: OwnedCursor, b: OwnedCursor): number {
  const x = encodeCursor(a);
  const y = encodeCursor(b);
  return x < y ? -1 : x > y ? 1 : 0;
}

/** The cursor above every change of one version: "everything up to and including this version". */
export const endOfVersion = (version: string): string =>
  `${version}|${TOMBSTONE_KIND}|ffffffff-ffff-ffff-ffff-ffffffffffff`;
