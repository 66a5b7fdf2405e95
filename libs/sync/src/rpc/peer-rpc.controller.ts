import {
  ArgumentsHost,
  Catch,
  Controller,
  Inject,
  PipeTransform,
  RpcExceptionFilter,
  UseFilters,
} from '@nestjs/common';
import { Ctx, MessagePattern, Payload } from '@nestjs/microservices';
import { Observable, throwError } from 'rxjs';
import type { ZodType } from 'zod';
import { DB, type Db } from '@lib/db';
import { OWNED_MODELS, sharedModel } from '../models/registry';
import { isCursorText } from '../owned/cursor';
import { CopyPages } from './copy-pages';
import { OwnedRepository, TOMBSTONES } from '../owned/owned.repository';
import { DevicesRepository } from '../store/devices.repository';
import { SharedRepository } from '../shared/shared.repository';
import { SyncEngine } from '../sync.engine';
import { SYNC_OPTIONS, type SyncOptions } from '../sync.options';
import type { MembershipExport } from '../trust/library-trust';
import type { NatsRpcContext } from './nats-rpc.server';
import { rangeModel, RangesRepository } from '../antientropy/ranges.repository';
import {
  EVERY_DEVICE,
  MembershipRequest,
  OwnedCopyPageReply,
  OwnedCopyPageRequest,
  OwnedPageReply,
  OwnedPageRequest,
  PEER_RPC,
  PEER_RPC_REQUESTS,
  PeerRpcHandlers,
  RangesBucketsReply,
  RangesBucketsRequest,
  RangesRowsReply,
  RangesRowsRequest,
  RawJson,
  SharedChangesReply,
  SharedChangesRequest,
  SnapshotReply,
  SnapshotRequest,
  WatermarksReply,
  WatermarksRequest,
} from './protocol';

const PAGE_ROWS = 4000;
const RANGE_ROWS = 2000;

/** Cuts a page so that its JSON stays under the reply size the server accepts. */
function fitPage<T>(items: T[], budget: number): T[] {
  let size = 64;
  for (let i = 0; i < items.length; i++) {
    size += Buffer.byteLength(JSON.stringify(items[i])) + 1;
    if (size > budget) return items.slice(0, Math.max(1, i));
  }
  return items;
}

/** Room left for a reply's envelope under the largest message the server accepts. */
const budget = (ctx: NatsRpcContext): number => ctx.getMaxPayload() - 4096;

/** Validates a request with its method's schema (a ZodError's message reaches the requester). */
class RequestPipe<T> implements PipeTransform<unknown, T> {
  constructor(private readonly schema: ZodType<T>) {}
  transform(value: unknown): T {
    return this.schema.parse(value);
  }
}

/**
 * Passes every error on unchanged: the requester gets its message, as before these handlers ran
 * in Nest (Nest's default filter would turn an Error into "Internal server error").
 */
@Catch()
export class PeerRpcErrorFilter implements RpcExceptionFilter {
  catch(exception: unknown, _host: ArgumentsHost): Observable<never> {
    return throwError(() => exception);
  }
}

/**
 * What this device answers its peers (rpc/protocol.ts): its watermarks, pages of the owned
 * streams it holds, its own shared change log, pages of the shared tables for a state transfer, and
 * the library's membership and keys (to members only).
 */
@Controller()
@UseFilters(PeerRpcErrorFilter)
export class PeerRpcController implements PeerRpcHandlers<NatsRpcContext> {
  private readonly ranges = new RangesRepository();
  private readonly copyPages = new CopyPages(
    (owner, model, after, limit) => this.owned.copyPage(this.db, owner, model, after, limit),
    PAGE_ROWS,
  );
  constructor(
    @Inject(DB) private readonly db: Db,
    @Inject(SYNC_OPTIONS) private readonly options: SyncOptions,
    @Inject(OwnedRepository) private readonly owned: OwnedRepository,
    @Inject(SharedRepository) private readonly shared: SharedRepository,
    @Inject(DevicesRepository) private readonly devices: DevicesRepository,
    @Inject(SyncEngine) private readonly engine: SyncEngine,
  ) {}

  @MessagePattern(PEER_RPC.watermarks, EVERY_DEVICE)
  async watermarks(
    @Payload(new RequestPipe(PEER_RPC_REQUESTS.watermarks)) _request: WatermarksRequest,
  ): Promise<WatermarksReply> {
    const { state, shared } = await this.devices.watermarks(this.db);
    const counts = await this.owned.rowCounts(this.db);
    let rows = 0;
    for (const byModel of Object.values(counts)) for (const n of Object.values(byModel)) rows += n;
    return {
      deviceId: this.options.deviceId,
      name: this.options.deviceName,
      phase: this.engine.phase,
      // our own streams' newest committed positions (cheap: index lookups)
      ownedHead: await this.owned.streamHead(this.db, this.options.deviceId),
      sharedHead: await this.shared.head(this.db),
      sharedPrunedUpTo: await this.shared.prunedUpTo(this.db),
      state,
      shared,
      rows,
      counts,
    };
  }

  /** An OwnedPageReply, built as text: each change is serialised once, to size the page and to send. */
  @MessagePattern(PEER_RPC.ownedPage)
  async ownedPage(
    @Payload(new RequestPipe(PEER_RPC_REQUESTS.ownedPage)) r: OwnedPageRequest,
    @Ctx() ctx: NatsRpcContext,
  ): Promise<RawJson<OwnedPageReply>> {
    if (r.model && r.model !== TOMBSTONES && !OWNED_MODELS.some((m) => m.name === r.model))
      throw new Error(`unknown model ${r.model}`);
    // each change as its wire JSON built by Postgres (a row's values in column order, a tombstone)
    const changes = await this.owned.changesAfterJson(this.db, r.owner, r.after, PAGE_ROWS, true, r.model);
    const groups = new Map<string, string[]>();
    const tombstones: string[] = [];
    let size = 256;
    let taken = 0;
    for (const c of changes) {
      const json = c.json;
      size += Buffer.byteLength(json) + 1;
      if (size > budget(ctx) && taken > 0) break;
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

  @MessagePattern(PEER_RPC.ownedCopyPage)
  async ownedCopyPage(
    @Payload(new RequestPipe(PEER_RPC_REQUESTS.ownedCopyPage)) r: OwnedCopyPageRequest,
    @Ctx() ctx: NatsRpcContext,
  ): Promise<RawJson<OwnedCopyPageReply>> {
    const model = OWNED_MODELS.find((m) => m.name === r.model);
    if (!model) throw new Error(`unknown model ${r.model}`);
    if (r.after !== null && !isCursorText(r.after)) throw new Error('after: not a cursor');
    const room = budget(ctx);
    const page = await this.copyPages.take(r.owner, model, r.after, room);
    // the next page is read while this one travels and is written: a backfill asks for it next
    if (!page.done && page.last) this.copyPages.prefetch(r.owner, model, page.last, room);
    return new RawJson(
      `{"copy":${page.json},"rows":${page.rows},"last":${JSON.stringify(page.last)},"done":${page.done}}`,
    );
  }

  @MessagePattern(PEER_RPC.sharedChanges)
  async sharedChanges(
    @Payload(new RequestPipe(PEER_RPC_REQUESTS.sharedChanges)) r: SharedChangesRequest,
    @Ctx() ctx: NatsRpcContext,
  ): Promise<SharedChangesReply> {
    const pruned = await this.shared.prunedUpTo(this.db);
    if (pruned && (!r.after || r.after < pruned)) return { changes: [], done: true, complete: false };
    const changes = await this.shared.changesAfter(this.db, r.after, PAGE_ROWS);
    const page = fitPage(changes, budget(ctx));
    return { changes: page, done: changes.length < PAGE_ROWS && page.length === changes.length, complete: true };
  }

  /** What this device knows of the membership, for the member asking (its keys sealed to it). */
  @MessagePattern(PEER_RPC.membership)
  async membership(
    @Payload(new RequestPipe(PEER_RPC_REQUESTS.membership)) _r: MembershipRequest,
    @Ctx() ctx: NatsRpcContext,
  ): Promise<MembershipExport> {
    return this.engine.trust.exportFor(ctx.getSigner());
  }

  @MessagePattern(PEER_RPC.snapshot)
  async snapshot(
    @Payload(new RequestPipe(PEER_RPC_REQUESTS.snapshot)) r: SnapshotRequest,
    @Ctx() ctx: NatsRpcContext,
  ): Promise<SnapshotReply> {
    const model = sharedModel(r.model);
    if (!model) throw new Error(`unknown shared model ${r.model}`);
    const records = await this.shared.snapshotPage(this.db, model, r.after, PAGE_ROWS);
    const page = fitPage(records, budget(ctx));
    return { records: page, done: records.length < PAGE_ROWS && page.length === records.length };
  }

  /** Our non-empty buckets of one (model, owner) of sync_ranges (anti-entropy). */
  @MessagePattern(PEER_RPC.rangesBuckets)
  async rangesBuckets(
    @Payload(new RequestPipe(PEER_RPC_REQUESTS.rangesBuckets)) r: RangesBucketsRequest,
  ): Promise<RangesBucketsReply> {
    if (!rangeModel(r.model)) throw new Error(`unknown model ${r.model}`);
    return { buckets: await this.ranges.buckets(this.db, r.model, r.owner) };
  }

  /** A page of our rows (with their hashes) in some buckets of one (model, owner) (anti-entropy). */
  @MessagePattern(PEER_RPC.rangesRows)
  async rangesRows(
    @Payload(new RequestPipe(PEER_RPC_REQUESTS.rangesRows)) r: RangesRowsRequest,
    @Ctx() ctx: NatsRpcContext,
  ): Promise<RawJson<RangesRowsReply>> {
    const model = rangeModel(r.model);
    if (!model) throw new Error(`unknown model ${r.model}`);
    for (let limit = RANGE_ROWS; ; limit = Math.max(1, Math.floor(limit / 2))) {
      const page = await this.ranges.rows(this.db, model, r.owner, r.buckets, r.after, limit);
      const json = JSON.stringify(page);
      if (Buffer.byteLength(json) <= budget(ctx) || limit === 1) return new RawJson(json);
    }
  }
}
