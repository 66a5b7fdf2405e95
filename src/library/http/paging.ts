import { InvalidInputError } from '@lib/sync';
import { canonicalUuid, uuid } from './validation';

/**
 * Keyset paging of every list (docs/http.md "Lists"): `?limit=` (default 100, 1..1000) and an opaque
 * `?cursor=`, the base64url of the last key served. Keys are uuids, so pages are stable while
 * rows are written and every row is served exactly once.
 */

export const DEFAULT_LIMIT = 100;
export const MAX_LIMIT = 1000;

export interface PageRequest {
  limit: number;
  /** The key after which the page starts, or null for the first page. */
  after: string | null;
}

export interface Page<T> {
  items: T[];
  nextCursor: string | null;
}

export function encodePageCursor(key: string): string {
  return Buffer.from(JSON.stringify([key]), 'utf8').toString('base64url');
}

export function decodePageCursor(cursor: string): string {
  const bad = (): never => {
    throw new InvalidInputError('cursor', 'malformed; pass the nextCursor of the previous page');
  };
  if (!/^[A-Za-z0-9_-]{1,200}$/.test(cursor)) bad();
  let parsed: unknown;
  try {
    parsed = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8'));
  } catch {
    return bad();
  }
  if (!Array.isArray(parsed) || parsed.length !== 1) return bad();
  const key = uuid.safeParse(parsed[0]);
  return key.success ? canonicalUuid(key.data) : bad();
}

/** Reads `limit` and `cursor` from a query (400 naming the parameter when malformed). */
export function parsePageRequest(query: Record<string, unknown>): PageRequest {
  const { limit: rawLimit, cursor: rawCursor } = query;
  let limit = DEFAULT_LIMIT;
  if (rawLimit !== undefined) {
    if (typeof rawLimit !== 'string' || !/^\d{1,7}$/.test(rawLimit))
      throw new InvalidInputError('limit', `expected an integer 1..${MAX_LIMIT}`);
    limit = Number(rawLimit);
    if (limit < 1 || limit > MAX_LIMIT) throw new InvalidInputError('limit', `expected 1..${MAX_LIMIT}, got ${limit}`);
  }
  let after: string | null = null;
  if (rawCursor !== undefined && rawCursor !== '') {
    if (typeof rawCursor !== 'string') throw new InvalidInputError('cursor', 'expected one cursor');
    after = decodePageCursor(rawCursor);
  }
  return { limit, after };
}

/**
 * The page from rows fetched with `limit + 1` (the extra row only says that there is more), so
 * the last page has a null cursor.
 */
export function toPage<R, T>(
  rows: readonly R[],
  req: PageRequest,
  keyOf: (row: R) => string,
  view: (row: R) => T,
): Page<T> {
  const served = rows.slice(0, req.limit);
  const more = rows.length > req.limit;
  return {
    items: served.map(view),
    nextCursor: more && served.length ? encodePageCursor(keyOf(served[served.length - 1])) : null,
  };
}
