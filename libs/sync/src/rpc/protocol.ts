import { z } from 'zod';
import type { Tombstone } from '../owned/owned.repository';
import type { SharedState } from '../shared/merge';
import type { ChangeLogRow } from '../shared/shared.repository';
import type { MembershipExport } from '../trust/library-trust';
import type { BucketDigest, RangeRowsPage } from '../antientropy/ranges.repository';

/**
 * The peer protocol: request-reply between the devices of a library over core NATS (each reply
 * is correlated with its request by the requester's inbox). Every device answers every method on
 * sync.<lib>.rpc.<device>.<pattern>, and watermarks also on sync.<lib>.rpc.all.watermarks, for
 * the discovery of online peers. A request is the JSON of its request type; a reply is
 * {"ok":true,"result":<reply>} or {"ok":false,"error":"<message>"}.
 */
export interface PeerRpc {
  watermarks: { request: WatermarksRequest; reply: WatermarksReply };
  ownedPage: { request: OwnedPageRequest; reply: OwnedPageReply };
  ownedCopyPage: { request: OwnedCopyPageRequest; reply: OwnedCopyPageReply };
  sharedChanges: { request: SharedChangesRequest; reply: SharedChangesReply };
  snapshot: { request: SnapshotRequest; reply: SnapshotReply };
  membership: { request: MembershipRequest; reply: MembershipExport };
  rangesBuckets: { request: RangesBucketsRequest; reply: RangesBucketsReply };
  rangesRows: { request: RangesRowsRequest; reply: RangesRowsReply };
}
export type PeerMethod = keyof PeerRpc;

/** Each method's pattern: the last part of its subject. */
export const PEER_RPC = {
  watermarks: 'watermarks',
  ownedPage: 'owned.page',
  ownedCopyPage: 'owned.copy',
  sharedChanges: 'shared.changes',
  snapshot: 'shared.snapshot',
  membership: 'membership',
  rangesBuckets: 'ranges.buckets',
  rangesRows: 'ranges.rows',
} as const satisfies Record<PeerMethod, string>;

/** The methods every device also answers on sync.<lib>.rpc.all.<pattern> (a handler's extras). */
export const EVERY_DEVICE = { everyDevice: true } as const;

/** The wire envelope of a reply. */
export type RpcReply<T> = { ok: true; result: T } | { ok: false; error: string };

/** A reply already serialised (a large page is built as text, not as objects). */
export class RawJson<T = unknown> {
  /** Only for the type checker: what the text is the JSON of. */
  declare private readonly of?: T;
  constructor(readonly text: string) {}
}

/** What a server implements: one handler per method, replying the reply type or its JSON. */
export type PeerRpcHandlers<Context> = {
  [M in PeerMethod]: (
    request: PeerRpc[M]['request'],
    context: Context,
  ) => Promise<PeerRpc[M]['reply'] | RawJson<PeerRpc[M]['reply']>>;
};

const uuid = z.string().uuid();

// ---- membership: the members, removals and key epochs the answering device knows (the keys
// sealed to the asking member's own key; refused to a device that is not a member)

export const MembershipRequest = z.object({}).strict();
export type MembershipRequest = z.infer<typeof MembershipRequest>;

// ---- watermarks: a device's positions in every stream (also the discovery of online peers)

export const WatermarksRequest = z.object({});
export type WatermarksRequest = z.infer<typeof WatermarksRequest>;

export interface WatermarksReply {
  deviceId: string;
  name: string;
  phase: string;
  /** Our own owned stream: every change at or below this cursor is committed here. */
  ownedHead: string | null;
  /** Our own shared log's newest change. */
  sharedHead: string | null;
  /** Below this our log was pruned: a peer behind it needs a state transfer. */
  sharedPrunedUpTo: string | null;
  /** owner → how far we hold that owner's owned stream contiguously. */
  state: Record<string, string>;
  /** origin → how far we have applied that origin's shared log. */
  shared: Record<string, string>;
  /** Rows we hold, to pick the best backfill source. */
  rows: number;
  /** owner → model → rows we hold of it (backfill progress totals). */
  counts: Record<string, Record<string, number>>;
}

// ---- owned.page: an owner's stream after a cursor (one model of it, for a backfill)

export const OwnedPageRequest = z
  .object({ owner: uuid, after: z.string().nullable(), model: z.string().optional() })
  .strict();
export type OwnedPageRequest = z.infer<typeof OwnedPageRequest>;

/** A page of an owner's stream, compact: rows as value arrays in their model's column order. */
export interface OwnedPageReply {
  rows: { model: string; values: unknown[][] }[];
  tombstones: Tombstone[];
  /** Cursor of the page's last change (null for an empty page). */
  last: string | null;
  done: boolean;
}

// ---- owned.copy: a page of an owner's rows of one model as COPY text (a backfill's bulk form of
// owned.page; tombstones come through owned.page). Answered by devices since this method exists:
// an older one has no responder, and the requester falls back to owned.page.

export const OwnedCopyPageRequest = z
  .object({ owner: uuid, model: z.string().max(40), after: z.string().nullable() })
  .strict();
export type OwnedCopyPageRequest = z.infer<typeof OwnedCopyPageRequest>;

/**
 * `copy`: the rows in (version, id) order as Postgres COPY text rows (tab-separated values in the
 * model's column order, one row per line, `\N` for null, timestamps ISO in UTC); `rows`: how many;
 * `last`: the cursor of the last one (null when none); `done`: nothing follows.
 */
export interface OwnedCopyPageReply {
  copy: string;
  rows: number;
  last: string | null;
  done: boolean;
}

// ---- shared.changes: the device's own shared change log after a clock

export const SharedChangesRequest = z.object({ after: z.string().nullable() }).strict();
export type SharedChangesRequest = z.infer<typeof SharedChangesRequest>;

export interface SharedChangesReply {
  changes: ChangeLogRow[];
  done: boolean;
  /** false: changes after the requested point were pruned; take a state transfer instead. */
  complete: boolean;
}

// ---- shared.snapshot: a page of a shared model's records with their field clocks

export const SnapshotRequest = z.object({ model: z.string(), after: z.string().nullable() }).strict();
export type SnapshotRequest = z.infer<typeof SnapshotRequest>;

export interface SnapshotReply {
  records: { key: string; state: SharedState }[];
  done: boolean;
}

// ---- ranges.buckets / ranges.rows: anti-entropy (docs/design.md "Anti-entropy"). A (model, owner)
// of sync_ranges: an owned model, `owned_tombstones`, or a shared model with the nil owner.

export const RangesBucketsRequest = z.object({ model: z.string().max(40), owner: uuid }).strict();
export type RangesBucketsRequest = z.infer<typeof RangesBucketsRequest>;

/** The answering device's non-empty buckets of that (model, owner), in bucket order (4096 at most). */
export interface RangesBucketsReply {
  buckets: BucketDigest[];
}

/** At most this many buckets per ranges.rows request. */
export const RANGES_ROWS_MAX_BUCKETS = 64;

export const RangesRowsRequest = z
  .object({
    model: z.string().max(40),
    owner: uuid,
    buckets: z.array(z.number().int().min(0).max(4095)).min(1).max(RANGES_ROWS_MAX_BUCKETS),
    /** The `next` of the previous page (null: the first). */
    after: z.string().max(200).nullable(),
  })
  .strict();
export type RangesRowsRequest = z.infer<typeof RangesRowsRequest>;

/** The rows (owned), tombstones or records (shared, with field clocks) of those buckets, a page. */
export type RangesRowsReply = RangeRowsPage;

/** The schema that validates each method's request on the server. */
export const PEER_RPC_REQUESTS: { [M in PeerMethod]: z.ZodType<PeerRpc[M]['request']> } = {
  watermarks: WatermarksRequest,
  ownedPage: OwnedPageRequest,
  ownedCopyPage: OwnedCopyPageRequest,
  sharedChanges: SharedChangesRequest,
  snapshot: SnapshotRequest,
  membership: MembershipRequest,
  rangesBuckets: RangesBucketsRequest,
  rangesRows: RangesRowsRequest,
};
