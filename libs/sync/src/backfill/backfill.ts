import { Logger } from '@nestjs/common';
import type { Db, DbOrTx } from '@lib/db';
import { OWNED_MODELS } from '../models/registry';
import type { OwnedApplier, PreparedState } from '../owned/owned-applier';
import { TOMBSTONES } from '../owned/owned.repository';
import type { StateTransfer } from './state-transfer';
import { CheckpointsRepository } from '../store/checkpoints.repository';
import type { DevicesRepository } from '../store/devices.repository';
import type { PeerClient } from '../rpc/peer.client';
import { WatermarksReply } from '../rpc/protocol';

const DONE = 'done';
const KEY = {
  finished: 'backfill',
  plan: 'backfill:plan',
  owned: (owner: string, model: string) => `backfill:owned:${owner}:${model}`,
  shared: (model: string) => `backfill:shared:${model}`,
};

/**
 * What a backfill promises to hold at the end: the watermarks of its source(s) when it started,
 * the source's own heads included (as its entries in `state` and `shared`).
 */
export interface Plan {
  state: Record<string, string>;
  shared: Record<string, string>;
  source: string;
}

export interface BackfillProgress {
  source: string | null;
  /** startedAfter: the checkpoint this item resumed from (null: from the beginning). */
  items: { owner: string; model: string; done: number; total: number | null; startedAfter?: string | null }[];
}

/**
 * Fills an empty device from a peer: every owner's device-owned data model by model in dependency
 * order (keyset pages by version and id), then a state transfer of the shared tables. The cursor
 * of every (owner, model) commits with the page it covers, so a crash or a vanished peer resumes
 * from the checkpoint, from the same or another peer. Watermarks are set only at the end, from the
 * source's watermarks at the start (the minimum over sources if it had to switch).
 */
export class BackfillService {
  private readonly logger = new Logger('Backfill');
  progress: BackfillProgress = { source: null, items: [] };
  private readonly checkpoints = new CheckpointsRepository();
  /** Sources that do not answer owned.copy (older devices): their pages come as JSON. */
  private readonly copyUnsupported = new Set<string>();

  constructor(
    private readonly db: Db,
    private readonly peers: PeerClient,
    private readonly stateTransfer: StateTransfer,
    private readonly owned: OwnedApplier,
    private readonly devices: DevicesRepository,
    private readonly self: { id: string; libraryId: string },
    /** writers: pages written at once (each on its own connection); 1 for a one-session database. */
    private readonly options: { pauseMs: number; writers: number } = { pauseMs: 0, writers: 2 },
  ) {}

  async isFinished(): Promise<boolean> {
    return (await this.get(KEY.finished)) === DONE;
  }

  async hasStarted(): Promise<boolean> {
    return (await this.get(KEY.plan)) !== null;
  }

  /** Marks a device that found no peer as complete: it is the library's first device. */
  async finishEmpty(): Promise<void> {
    await this.put(this.db, KEY.finished, DONE);
  }

  /** Runs the backfill from `source` to the end; throws if the source fails (caller picks another). */
  async runFrom(source: WatermarksReply): Promise<void> {
    const started = Date.now();
    const plan = await this.plan(source);
    this.progress = { source: source.deviceId, items: [] };
    const owners = Object.keys(plan.state).filter((o) => o !== this.self.id);
    for (const owner of owners) {
      for (const model of [...OWNED_MODELS.map((m) => m.name), TOMBSTONES]) {
        const item = {
          owner,
          model,
          done: 0,
          total: model === TOMBSTONES ? null : (source.counts?.[owner]?.[model] ?? 0),
        };
        this.progress.items.push(item);
        await this.pullModel(source.deviceId, owner, model, item);
      }
    }
    const shared = { owner: '*', model: 'shared', done: 0, total: null };
    this.progress.items.push(shared);
    shared.done = await this.stateTransfer.run(
      source.deviceId,
      // the source's own head is in plan.shared: on a resume it is the one of the first attempt,
      // whose pages are already here, not the head the source has now
      { ...source, shared: plan.shared, sharedHead: null },
      {
        load: (model) => this.get(KEY.shared(model)),
        save: (model, key) => (tx) => this.put(tx, KEY.shared(model), key ?? ''),
      },
    );
    await this.db.transaction().execute(async (tx) => {
      for (const owner of owners) {
        await this.devices.ensurePeer(tx, owner);
        await this.devices.raiseStateWatermark(tx, owner, plan.state[owner]);
      }
      await this.checkpoints.clear(tx, 'backfill:');
      await this.put(tx, KEY.finished, DONE);
    });
    const rows = this.progress.items.reduce((n, i) => n + i.done, 0);
    const ms = Date.now() - started;
    this.logger.log(
      `backfill from ${source.name} finished: ${rows} rows in ${ms} ms (${Math.round((rows * 1000) / Math.max(1, ms))} rows/s)`,
    );
  }

  private async pullModel(
    source: string,
    owner: string,
    model: string,
    item: { done: number; total: number | null; startedAfter?: string | null },
  ): Promise<void> {
    let after = await this.get(KEY.owned(owner, model));
    item.startedAfter = after;
    if (after === DONE) return;
    // a page is fetched and prepared while the previous one is being written: the peer reads,
    // this process checks and Postgres writes, all at once. Rows come as COPY text (owned.copy:
    // checked and staged by the database, no row objects here) unless the source predates it;
    // tombstones as JSON (owned.page).
    type Fetched = { last: string | null; done: boolean; prepared: PreparedState | null; n: number };
    const jsonPage = (from: string | null): Promise<Fetched> =>
      this.peers
        .ownedPage(source, { owner, after: from, model }, 30_000) // twice the default timeout
        .then((page) => {
          // checked as it came (values in column order): no row objects are made
          const prepared = page.last ? this.owned.preparePage(this.self.libraryId, owner, null, page.last, page) : null;
          const n = page.rows.reduce((k, g) => k + g.values.length, 0) + page.tombstones.length;
          return { last: page.last, done: page.done, prepared, n };
        });
    const copyPage = (from: string | null): Promise<Fetched> =>
      this.peers.ownedCopyPage(source, { owner, after: from, model }, 30_000).then((page) => ({
        last: page.last,
        done: page.done,
        prepared: page.rows > 0 ? this.owned.prepareCopyPage(this.self.libraryId, owner, model, page) : null,
        n: page.rows,
      }));
    const fetchPage = (from: string | null): Promise<Fetched> =>
      model === TOMBSTONES || this.copyUnsupported.has(source)
        ? jsonPage(from)
        : copyPage(from).catch(async (e: unknown) => {
            if ((e as { code?: unknown }).code !== '503') throw e;
            // no responder for owned.copy: a source from before it, if it answers owned.page
            // (otherwise it is gone, and that failure is the backfill's as any other)
            const page = await jsonPage(from);
            this.copyUnsupported.add(source);
            return page;
          });
    // Up to `writers` pages are written at once, each in its own transaction. Their commits are
    // chained: a page commits (with its checkpoint) only after the one before it has, and fails
    // if that one failed, so the checkpoint never passes a page that is not stored.
    let committed: Promise<void> = Promise.resolve();
    const writing: Promise<void>[] = [];
    let next: Promise<Fetched> | null = fetchPage(after);
    while (next) {
      const page: Fetched = await next;
      const { prepared, n } = page;
      const last = page.last ?? after;
      next = page.done || page.last === null ? null : fetchPage(last);
      next?.catch(() => undefined); // observed when awaited
      const mark = page.done ? DONE : (last ?? '');
      const previous = committed;
      const write = prepared
        ? this.owned.apply(prepared, {
            raiseWatermark: false,
            beforeCommit: async (tx) => {
              await previous;
              await this.put(tx, KEY.owned(owner, model), mark);
            },
          })
        : previous.then(() => this.put(this.db, KEY.owned(owner, model), mark));
      committed = write.then(() => {
        item.done += n;
      });
      committed.catch(() => undefined); // observed below
      writing.push(committed);
      if (writing.length >= this.options.writers) await writing.shift();
      after = last;
      if (this.options.pauseMs && next) await new Promise((r) => setTimeout(r, this.options.pauseMs));
    }
    await Promise.all(writing);
    // the source's count was taken at the start: what it received meanwhile came along too
    if (item.total !== null && item.done > item.total) item.total = item.done;
  }

  /** The plan of this run: a new one, or the stored one narrowed to what this source vouches for. */
  private async plan(source: WatermarksReply): Promise<Plan> {
    const storedText = await this.get(KEY.plan);
    const plan = backfillPlan(source, storedText ? (JSON.parse(storedText) as Plan) : null);
    if (storedText) this.logger.log(`resuming backfill from checkpoints with ${source.name}`);
    await this.put(this.db, KEY.plan, JSON.stringify(plan));
    return plan;
  }

  private get(key: string): Promise<string | null> {
    return this.checkpoints.get(this.db, key);
  }

  private put(db: DbOrTx, key: string, value: string): Promise<void> {
    return this.checkpoints.set(db, key, value);
  }
}

/**
 * A backfill's plan: what `source` vouches for now, its own heads included (its owned head in
 * `state`, its shared head in `shared`). A resumed backfill holds pages of the first attempt's
 * sources, taken when they were at the stored plan: each origin's watermark is the lower of the
 * two, and an origin either does not vouch for is left unset (its whole stream is caught up).
 */
export function backfillPlan(source: WatermarksReply, stored: Plan | null): Plan {
  const state: Record<string, string> = { ...source.state };
  if (source.ownedHead) state[source.deviceId] = source.ownedHead;
  const shared: Record<string, string> = { ...source.shared };
  if (source.sharedHead) shared[source.deviceId] = source.sharedHead;
  if (!stored) return { state, shared, source: source.deviceId };
  const narrow = (a: Record<string, string>, b: Record<string, string>): Record<string, string> =>
    Object.fromEntries(Object.keys(b).flatMap((k) => (a[k] === undefined ? [] : [[k, a[k] < b[k] ? a[k] : b[k]]])));
  return { state: narrow(stored.state, state), shared: narrow(stored.shared, shared), source: source.deviceId };
}
