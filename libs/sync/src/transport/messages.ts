import { z } from 'zod';

/**
 * Everything that travels between devices, validated at the boundary. A message that fails these
 * schemas (or the ownership rules checked when applying) is dead-lettered, never applied.
 */
const uuid = z.string().uuid();
const hlc = z.string().regex(/^\d{15}-\d{6}-[0-9a-f-]{36}$/, 'expected a clock stamp');
const cursor = z.string().regex(/^\d{15}-\d{6}-[0-9a-f-]{36}\|\d\|[0-9a-f-]{36}$/, 'expected an owned cursor');

const base = { v: z.literal(1), library: uuid, origin: uuid };

/**
 * One row of a state message: `{model, row}`, the row an object (its columns are checked against
 * the model when applied). A plain check rather than a zod object: a message carries thousands.
 */
function isStateRow(v: unknown): v is { model: string; row: Record<string, unknown> } {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) return false;
  const o = v as Record<string, unknown>;
  let keys = 0;
  for (const k in o) {
    if (k !== 'model' && k !== 'row') return false;
    keys++;
  }
  return (
    keys === 2 && typeof o.model === 'string' && typeof o.row === 'object' && o.row !== null && !Array.isArray(o.row)
  );
}
const stateRow = z.custom<{ model: string; row: Record<string, unknown> }>(
  isStateRow,
  'expected {model: string, row: object}',
);

/**
 * Rows of one model as values in column order (the registry's columns): `{model, values: [[...]]}`.
 * A plain check, like stateRow; the values are checked against the model when applied.
 */
function isColumnGroup(v: unknown): v is { model: string; values: unknown[][] } {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) return false;
  const o = v as Record<string, unknown>;
  let keys = 0;
  for (const k in o) {
    if (k !== 'model' && k !== 'values') return false;
    keys++;
  }
  return keys === 2 && typeof o.model === 'string' && Array.isArray(o.values) && o.values.every(Array.isArray);
}
const columnGroup = z.custom<{ model: string; values: unknown[][] }>(
  isColumnGroup,
  'expected {model: string, values: array of arrays}',
);

/**
 * Owned state of one owner: rows and tombstones in cursor order, after `from` up to `to`. Rows
 * travel as `columns` (values in column order, grouped by model: what a device sends), or as
 * `rows` (objects: what devices sent before, still applied), or, for a backlog of one model's
 * rows alone, as `copy`: that many lines of Postgres COPY text of the model's columns (checked
 * when applied, in the database; `rows`, `columns` and `tombstones` are then empty).
 */
export const StateMessage = z
  .object({
    ...base,
    kind: z.literal('state'),
    /** The owner's published cursor before this message (null for its first), for gap detection. */
    from: cursor.nullable(),
    to: cursor,
    rows: z.array(stateRow).max(100_000),
    columns: z
      .array(columnGroup)
      .max(20)
      .refine((g) => g.reduce((n, x) => n + x.values.length, 0) <= 100_000, 'more than 100000 rows')
      .optional(),
    tombstones: z.array(z.object({ model: z.string(), id: uuid, device_id: uuid, version: hlc }).strict()).max(100_000),
    copy: z
      .object({ model: z.string(), rows: z.number().int().min(1).max(100_000), data: z.string() })
      .strict()
      .optional(),
  })
  .strict();
export type StateMessage = z.infer<typeof StateMessage>;

export const SharedChangeWire = z
  .object({
    hlc,
    model: z.string(),
    record_key: z.string().max(200),
    op: z.enum(['set', 'delete']),
    fields: z.record(z.unknown()),
  })
  .strict();
export type SharedChangeWire = z.infer<typeof SharedChangeWire>;

/** A run of the origin's shared change log, oldest first. */
export const SharedMessage = z
  .object({
    ...base,
    kind: z.literal('shared'),
    /** The origin's last change published before this batch (null for its first), for gap detection. */
    prev: hlc.nullable(),
    changes: z.array(SharedChangeWire).min(1).max(100_000),
  })
  .strict();
export type SharedMessage = z.infer<typeof SharedMessage>;

/** A device announcing itself to the library (kept in the stream, so offline peers learn of it). */
export const HelloMessage = z.object({ ...base, kind: z.literal('hello'), name: z.string().max(200) }).strict();
export type HelloMessage = z.infer<typeof HelloMessage>;

/** A library key epoch made by a rotation, sealed to each recipient's X25519 key (base64). */
export const RotationWire = z
  .object({
    keyId: z.string().regex(/^[0-9a-f]{16}$/),
    epoch: z.number().int().min(1),
    recipients: z.array(uuid).max(10_000),
    wrapped: z.record(uuid, z.string().max(200)),
  })
  .strict();

/**
 * A device removed from the library by a member: its signed removal (base64) and the library key's
 * new epoch, which the removed device cannot open. It no longer holds back pruning anywhere.
 */
export const RemovedMessage = z
  .object({
    ...base,
    kind: z.literal('removed'),
    device: uuid,
    removal: z.string().max(200),
    rotation: RotationWire.nullable(),
  })
  .strict();
export type RemovedMessage = z.infer<typeof RemovedMessage>;

export const LogMessage = z.discriminatedUnion('kind', [StateMessage, SharedMessage, HelloMessage, RemovedMessage]);
export type LogMessage = z.infer<typeof LogMessage>;

/** Presence over core NATS: who is alive and how far it has applied every origin's streams. */
export const Heartbeat = z
  .object({
    ...base,
    kind: z.literal('heartbeat'),
    name: z.string().max(200),
    phase: z.string().max(40),
    hlc,
    /** owner id → this device's state watermark for that owner. */
    state: z.record(uuid, cursor),
    /** origin id → highest shared change of that origin applied here. */
    shared: z.record(uuid, hlc),
    /** The sender's own streams: its newest committed owned change and shared change. */
    ownedHead: cursor.nullable(),
    sharedHead: hlc.nullable(),
    /** A hash of the members and key epochs the sender knows: a difference asks it for them. */
    trust: z.string().max(64).optional(),
    /**
     * Anti-entropy: `model:owner` → `xor:count` of the sender's sync_ranges for that (model,
     * owner) (shared models under the nil owner). Absent from devices that predate it.
     */
    ranges: z
      .record(z.string().max(80), z.string().regex(/^-?\d{1,20}:\d{1,12}$/))
      .refine((r) => Object.keys(r).length <= 10_000, 'too many ranges')
      .optional(),
  })
  // fields a newer device adds are dropped, not refused: a library's devices upgrade one at a time
  .strip();
export type Heartbeat = z.infer<typeof Heartbeat>;

/** Explicit acknowledgement of an origin's shared changes, sent soon after applying them. */
export const AckMessage = z
  .object({ ...base, kind: z.literal('ack'), target: uuid, shared: hlc.nullable(), state: cursor.nullable() })
  .strict();
export type AckMessage = z.infer<typeof AckMessage>;

/** Human-readable reason of a failed parse: the first issues with their paths. */
export function describeZodError(e: z.ZodError): string {
  return e.issues
    .slice(0, 3)
    .map((i) => `${i.path.join('.') || '(message)'}: ${i.message}`)
    .join('; ');
}
