import { randomUUID } from 'node:crypto';
import { z, ZodError, ZodIssue } from 'zod';
import { InvalidInputError } from '@lib/sync';

/**
 * Input validation of the HTTP API: zod schemas for the fields docs/http.md names, and the one place
 * where a zod error becomes a 400 naming the field ("items[10].sizeBytes: Expected number, …").
 */

/** How many issues one 400 message lists; the first names the field. */
const MAX_ISSUES = 5;

export const MAX_NAME = 1000;
export const MAX_PATH = 4096;

/** `items[10].sizeBytes`; the empty path is the body itself. */
export function fieldPath(path: readonly (string | number)[], root = 'body'): string {
  let out = '';
  for (const p of path) out += typeof p === 'number' ? `[${p}]` : out ? `.${p}` : p;
  return out || root;
}

function describeIssue(issue: ZodIssue, root: string): [field: string, detail: string][] {
  if (issue.code === 'unrecognized_keys') {
    return issue.keys.map((k) => [fieldPath([...issue.path, k], root), 'unknown field']);
  }
  if (issue.code === 'invalid_type' && issue.received === 'undefined')
    return [[fieldPath(issue.path, root), 'required']];
  return [[fieldPath(issue.path, root), issue.message]];
}

/** A zod error as the domain's 400: the first field named, then the others. */
export function toInvalidInput(error: ZodError, root = 'body'): InvalidInputError {
  const all = error.issues.flatMap((i) => describeIssue(i, root));
  const [[field, detail]] = all.length ? all : [[root, 'invalid'] as [string, string]];
  const more = all.slice(1, MAX_ISSUES).map(([f, d]) => `; ${f}: ${d}`);
  const rest = all.length > MAX_ISSUES ? `; and ${all.length - MAX_ISSUES} more` : '';
  return new InvalidInputError(field, `${detail}${more.join('')}${rest}`);
}

/** Parses input with schema or throws the 400 naming the first bad field. */
export function parseInput<S extends z.ZodTypeAny>(schema: S, input: unknown, root = 'body'): z.output<S> {
  const res = schema.safeParse(input);
  if (!res.success) throw toInvalidInput(res.error, root);
  return res.data;
}

/*
 * The field schemas below are plain checks, without zod transforms or refinements: those cost ten
 * times more, and a batch validates 10,000 entries. Values are canonicalised where they become
 * columns (canonicalUuid, canonicalTimestamp).
 */

/** zod's uuid pattern (v3), for checks done without zod: it must accept exactly what `uuid` does. */
export const ZOD_UUID = /^[0-9a-fA-F]{8}\b-[0-9a-fA-F]{4}\b-[0-9a-fA-F]{4}\b-[0-9a-fA-F]{4}\b-[0-9a-fA-F]{12}$/i;

/** A uuid, any case; see canonicalUuid. */
export const uuid = z.string({ invalid_type_error: 'expected a uuid string' }).uuid('expected a uuid');

/** Lower case, as Postgres returns uuids: keys and comparisons in JS must agree with it. */
export function canonicalUuid<T extends string | null | undefined>(id: T): T {
  return (typeof id === 'string' ? id.toLowerCase() : id) as T;
}

/** The id a create supplied (canonical), or a new one. */
export function givenOrNewId(id: string | undefined): string {
  return id ? id.toLowerCase() : randomUUID();
}

/** Text Postgres can store: no NUL character, no unpaired UTF-16 surrogate (a 500 otherwise). */
// eslint-disable-next-line no-control-regex -- NUL is exactly what this rejects
export const STORABLE = /^(?:[^\u0000\ud800-\udfff]|[\ud800-\udbff][\udc00-\udfff])*$/;
const STORABLE_MESSAGE = 'must not contain NUL characters or unpaired surrogates';

/** Any text up to `max` characters that the database can store. */
export const text = (max: number) => z.string().max(max).regex(STORABLE, STORABLE_MESSAGE);
/** A required human name: trimmed, not empty. */
export const name = z.string().trim().min(1, 'must not be empty').max(MAX_NAME).regex(STORABLE, STORABLE_MESSAGE);
/** A file's own name: not blank, kept exactly as given (leading spaces are legal in file names). */
export const fileName = text(MAX_NAME).min(1, 'must not be empty').regex(/\S/, 'must not be blank');
/** A path or mount point: kept as given, not empty. */
export const path = text(MAX_PATH).min(1, 'must not be empty');
/** A byte count: a non-negative integer a JS number holds exactly. */
export const bytes = z
  .number()
  .int('expected an integer')
  .nonnegative('must not be negative')
  .max(Number.MAX_SAFE_INTEGER);
/** An ISO-8601 date-time with zone; see canonicalTimestamp. */
export const isoDateTime = z
  .string()
  .datetime({ offset: true, message: 'expected an ISO-8601 date-time, e.g. 2024-05-01T12:00:00Z' });

/**
 * Already UTC with milliseconds. Only for strings that passed `isoDateTime` (whose pattern checks
 * the ranges of month, day and time): for those, Date would give back the same text.
 */
const CANONICAL_ISO = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/;

/** UTC with milliseconds: what every device stores and reads back, whatever zone the input used. */
export function canonicalTimestamp(iso: string): string {
  return CANONICAL_ISO.test(iso) ? iso : new Date(iso).toISOString();
}

/** A route parameter that must be a uuid (400 naming the parameter otherwise). */
export function uuidParam(param: string, value: unknown): string {
  return canonicalUuid(parseInput(uuid, value, param));
}

/** A request body: a missing body reads as {} so that required fields are named one by one. */
export function bodyOf(raw: unknown): unknown {
  return raw === undefined ? {} : raw;
}

/** A PATCH body: at least one field (400 otherwise). */
export function parsePatch<S extends z.ZodTypeAny>(schema: S, raw: unknown): z.output<S> {
  const patch = parseInput(schema, bodyOf(raw)) as Record<string, unknown>;
  if (Object.keys(patch).length === 0) throw new InvalidInputError('body', 'no field to change');
  return patch as z.output<S>;
}

/** An optional query parameter that, when given, must be one uuid. */
export function uuidQuery(query: Record<string, unknown>, param: string): string | undefined {
  const v = query[param];
  if (v === undefined) return undefined;
  if (typeof v !== 'string') throw new InvalidInputError(param, 'expected one uuid');
  return canonicalUuid(parseInput(uuid, v, param));
}
