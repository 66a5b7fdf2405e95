import { z } from 'zod';
import type { Db } from '@lib/db';
import { OWNED_MODELS, ownedModel, sharedModel } from '../models/registry';
import type { OwnedRepository, Tombstone } from '../owned/owned.repository';
import { RejectedMessageError } from '../errors';
import { TOMBSTONES } from '../owned/owned.repository';
import type { SharedState } from '../shared/merge';
import type { ChangeLogRow, SharedRepository } from '../shared/shared.repository';
import { JetStreamTransport, RawJson } from '../transport/jetstream.transport';
import type { DevicesRepository } from './devices.repository';
import { endOfVersion } from '../owned/cursor';

/**
 * Request-reply between peers (NATS request/response: each reply is correlated with its request
 * by the requester's inbox). Every device serves the same methods on sync.<lib>.rpc.<device>.*,
 * and watermarks also on sync.<lib>.rpc.all.* for discovery.
 */

export { endOfVersion };

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

/** A page of an owner's stream, compact: rows as value arrays in their model's column order. */
export interface OwnedPageReply {
  rows: { model: string; values: unknown[][] }[];
  tombstones: Tombstone[];
  /** Cursor of the page's last change (null for an empty page). */
  last: string | null;
  done: boolean;
}

/** Rows of a page as objects (what the applier validates); a malformed page is refused. */
export function expandOwnedPage(page: OwnedPageReply): {
  rows: { model: string; row: Record<string, unknown> }[];
  tombstones: Tombstone[];
} {
  const rows: { model: string; row: Record<string, unknown> }[] = [];
  for (const group of page.rows) {
    const model = ownedModel(group.model);
    if (!model) throw new RejectedMessageError('unknown_model', `page rows of ${group.model}`);
    for (const values of group.values) {
      if (!Array.isArray(values) || values.length !== model.columns.length)
        throw new RejectedMessageError('invalid_row', `a ${group.model} row of the wrong width`);
      const row: Record<string, unknown> = {};
      for (let i = 0; i < model.columns.length; i++) row[model.columns[i]] = values[i];
      rows.push({ model: group.model, row });
    }
  }
  return { rows, tombstones: page.tombstones };
}
export interface SharedChangesReply {
  changes: ChangeLogRow[];
  done: boolean;
  /** false: changes after the requested point were pruned; take a state transfer instead. */
  complete: boolean;
}
export interface SnapshotReply {
  records: { key: string; state: SharedState }[];
  done: boolean;
}

const uuid = z.string().uuid();
const OwnedPageRequest = z.object({ owner: uuid, after: z.string().nullable(), model: z.string().optional() }).strict();
const SharedChangesRequest = z.object({ after: z.string().nullable() }).strict();
const SnapshotRequest = z.object({ model: z.string(), after: z.string().nullable() }).strict();

const PAGE_ROWS = 4000;

/** Cuts a page so that its JSON stays under the reply size the server accepts. */
function fitPage<T>(items: T[], budget: number): T[] {
  let size = 64;
  for (let i = 0; i < items.length; i++) {
    size += Buffer.byteLength(JSON.stringify(items[i])) + 1;
    if (size > budget) return items.slice(0, Math.max(1, i));
  }
  return items;
}

export class PeerRpcServer {
  constructor(
    private readonly db: Db,
    private readonly owned: OwnedRepository,
    private readonly shared: SharedRepository,
    private readonly devices: DevicesRepository,
    private readonly transport: JetStreamTransport,
    private readonly self: { id: string; name: string },
    private readonly phase: () => string,
  ) {}

  /** Subscribes the handlers (once connected; the client resubscribes after reconnects). */
  serve(): boolean {
    const s = this.transport.subjects;
    const subs = [
      this.transport.serve(s.rpc(this.self.id, 'watermarks'), () => this.watermarks()),
      this.transport.serve(s.rpcAll('watermarks'), () => this.watermarks()),
      this.transport.serve(s.rpc(this.self.id, 'owned.page'), (r) => this.ownedPage(r)),
      this.transport.serve(s.rpc(this.self.id, 'shared.changes'), (r) => this.sharedChanges(r)),
      this.transport.serve(s.rpc(this.self.id, 'shared.snapshot'), (r) => this.snapshot(r)),
    ];
    return subs.every(Boolean);
  }

  private get budget(): number {
    return this.transport.maxPayload - 4096;
  }

  /** Our own streams' newest committed positions (cheap: index lookups). */
  async heads(): Promise<{ ownedHead: string | null; sharedHead: string | null }> {
    return {
      ownedHead: await this.owned.streamHead(this.db, this.self.id),
      sharedHead: await this.shared.head(this.db),
    };
  }

  async watermarks(): Promise<WatermarksReply> {
    const peers = await this.devices.peers(this.db);
    const state: Record<string, string> = {};
    const shared: Record<string, string> = {};
    for (const p of peers) {
      if (p.state_watermark) state[p.id] = p.state_watermark;
      if (p.shared_watermark) shared[p.id] = p.shared_watermark;
    }
    const counts = await this.owned.rowCounts(this.db);
    let rows = 0;
    for (const byModel of Object.values(counts)) for (const n of Object.values(byModel)) rows += n;
    return {
      deviceId: this.self.id,
      name: this.self.name,
      phase: this.phase(),
      ...(await this.heads()),
      sharedPrunedUpTo: await this.shared.prunedUpTo(this.db),
      state,
      shared,
      rows,
      counts,
    };
  }

  /** An OwnedPageReply, built as text: each change is serialised once, to size the page and to send. */
  async ownedPage(request: unknown): Promise<RawJson> {
    const r = OwnedPageRequest.parse(request);
    if (r.model && r.model !== TOMBSTONES && !OWNED_MODELS.some((m) => m.name === r.model))
      throw new Error(`unknown model ${r.model}`);
    const changes = await this.owned.changesAfter(this.db, r.owner, r.after, PAGE_ROWS, r.model);
    const groups = new Map<string, string[]>();
    const tombstones: string[] = [];
    let size = 256;
    let taken = 0;
    for (const c of changes) {
      const json =
        c.type === 'row'
          ? JSON.stringify(ownedModel(c.model)!.columns.map((col) => c.row[col]))
          : JSON.stringify(c.tombstone);
      size += Buffer.byteLength(json) + 1;
      if (size > this.budget && taken > 0) break;
      if (c.type === 'row') {
        const group = groups.get(c.model) ?? [];
        group.push(json);
        groups.set(c.model, group);
      } else {
        tombstones.push(json);
      }
      taken++;
    }
    const rows = [...groups].map(
      ([model, values]) => `{"model":${JSON.stringify(model)},"values":[${values.join(',')}]}`,
    );
    const last = taken ? changes[taken - 1].cursor : null;
    const done = changes.length < PAGE_ROWS && taken === changes.length;
    return new RawJson(
      `{"rows":[${rows.join(',')}],"tombstones":[${tombstones.join(',')}],"last":${JSON.stringify(last)},"done":${done}}`,
    );
  }

  async sharedChanges(request: unknown): Promise<SharedChangesReply> {
    const r = SharedChangesRequest.parse(request);
    const pruned = await this.shared.prunedUpTo(this.db);
    if (pruned && (!r.after || r.after < pruned)) return { changes: [], done: true, complete: false };
    const changes = await this.shared.changesAfter(this.db, r.after, PAGE_ROWS);
    const page = fitPage(changes, this.budget);
    return { changes: page, done: changes.length < PAGE_ROWS && page.length === changes.length, complete: true };
  }

  async snapshot(request: unknown): Promise<SnapshotReply> {
    const r = SnapshotRequest.parse(request);
    const model = sharedModel(r.model);
    if (!model) throw new Error(`unknown shared model ${r.model}`);
    const records = await this.shared.snapshotPage(this.db, model, r.after, PAGE_ROWS);
    const page = fitPage(records, this.budget);
    return { records: page, done: records.length < PAGE_ROWS && page.length === records.length };
  }
}
