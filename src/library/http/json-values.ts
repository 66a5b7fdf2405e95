import { z } from 'zod';

/** Column values as the JSON of docs/http.md shows them, whichever driver (pg or PGlite) read them. */

/** What the views below give, as zod schemas of the answers (the OpenAPI description is made of them). */
export const idValue = z.string().uuid();
export const timestampValue = z.string().datetime();
export const bytesValue = z.number().int().nonnegative();

/** Text that is already what toISOString gives (as stored rows in wire form hold it). */
const CANONICAL_ISO = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/;

/** A timestamp as ISO-8601 UTC with milliseconds. */
export function isoOf(value: unknown): string {
  if (typeof value === 'string' && CANONICAL_ISO.test(value)) return value;
  return (value instanceof Date ? value : new Date(value as string)).toISOString();
}

export function isoOrNull(value: unknown): string | null {
  return value === null || value === undefined ? null : isoOf(value);
}

/** A bigint column as a JS number (byte counts stay far below 2^53). */
export function numberOf(value: unknown): number {
  return typeof value === 'number' ? value : Number(value);
}

export function numberOrNull(value: unknown): number | null {
  return value === null || value === undefined ? null : numberOf(value);
}
