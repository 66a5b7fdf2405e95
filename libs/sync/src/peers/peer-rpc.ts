import type { Db } from '@lib/db';
import { OWNED_MODELS, ownedModel, sharedModel } from '../models/registry';
import type { OwnedRepository } from '../owned/owned.repository';
import { TOMBSTONES } from '../owned/owned.repository';
import type { SharedRepository } from '../shared/shared.repository';
import { JetStreamTransport } from '../transport/jetstream.transport';
import type { DevicesRepository } from './devices.repository';
import {
  OwnedPageRequest,
  RawJson,
  SharedChangesReply,
  SharedChangesRequest,
  SnapshotReply,
  SnapshotRequest,
  WatermarksReply,
} from '../rpc/protocol';

/**
 * Request-reply between peers (NATS request/response: each reply is correlated with its request
 * by the requester's inbox). Every device serves the same methods on sync.<lib>.rpc.<device>.*,
 * and watermarks also on sync.<lib>.rpc.all.* for discovery.
 */

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
