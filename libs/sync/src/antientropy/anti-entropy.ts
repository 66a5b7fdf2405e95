import { Logger } from '@nestjs/common';
import { sql } from 'kysely';
import type { Db, DbOrTx } from '@lib/db';
import type { ClockService } from '../clock/clock.service';
import { decodeHlc } from '../clock/hlc';
import { RejectedMessageError } from '../errors';
import type { SyncMetrics } from '../metrics';
import { decodeRecordKey, ownedModel, SharedModel } from '../models/registry';
import { encodeCursor, TOMBSTONE_KIND } from '../owned/cursor';
import type { OwnedRepository, OwnedRow, Tombstone } from '../owned/owned.repository';
import type { PeerClient } from '../rpc/peer.client';
import { RANGES_ROWS_MAX_BUCKETS } from '../rpc/protocol';
import { initialState, mergeStates, SharedState } from '../shared/merge';
import type { SharedRepository } from '../shared/shared.repository';
import type { Heartbeat } from '../transport/messages';
import {
  BucketDigest,
  NIL_OWNER,
  RangeModel,
  rangeModel,
  RangeRowsPage,
  RangesRepository,
  rowFromValues,
} from './ranges.repository';

/** Beats between two reads of sync_ranges while nothing changed here (damage behind our back). */
const REFRESH_BEATS = 10;
/** Rows (by the peer's bucket counts) per ranges.rows batch, applied in one transaction. */
const BATCH_ROWS = 2000;
const HLC = /^\d{15}-\d{6}-[0-9a-f-]{36}$/;
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

interface PeerView {
  /** What the last heartbeat with a difference showed (differing digests, its heads, our generation). */
  signature: string | null;
  /** Consecutive heartbeats that showed that same signature. */
  streak: number;
  agreedAt: Date | null;
  running: boolean;
  lastRunAt: number;
}

/** A pass stopped because this device wrote or applied something meanwhile (retried later). */
class Moved extends Error {}

/**
 * Digest-driven anti-entropy (docs/design.md "Anti-entropy"). Heartbeats carry each (model, owner)'s
 * top-level digest from sync_ranges; a difference that persists over two heartbeats while neither
 * side moves is reconciled bucket by bucket with that peer: owned data from its owner only (the
 * owner's copy is the truth, a damaged row included), shared data through the field-clock merge.
 */
export class AntiEntropy {
  private readonly logger = new Logger('AntiEntropy');
  private readonly repo = new RangesRepository();
  private readonly views = new Map<string, PeerView>();
  /** Our change generation: local writes, applied messages, repairs. */
  private changes = 0;
  private cache: { value: Record<string, string>; gen: number; beats: number } | null = null;
  private stopped = false;
  private timer: NodeJS.Timeout | null = null;
  /** Tombstones dropped by the running reconciliation because their owner collected them. */
  private collectedDropped = 0;

  constructor(
    private readonly db: Db,
    private readonly peers: PeerClient,
    private readonly owned: OwnedRepository,
    private readonly shared: SharedRepository,
    private readonly clock: ClockService,
    private readonly metrics: SyncMetrics,
    private readonly selfId: string,
    private readonly heartbeatMs: number,
    /** This device is ready (not backfilling or catching up). */
    private readonly ready: () => boolean,
    /** An owner's tombstone horizon here (DevicesRepository.tombstoneHorizon): at or below it, we collect. */
    private readonly tombstoneHorizon: (db: DbOrTx, owner: string) => Promise<string | null> = async () => null,
  ) {}

  /** Something was written or applied here: the digests are read again. */
  changed(): void {
    this.changes++;
  }

  private generation(): number {
    return this.changes;
  }

  /**
   * Our top-level digests: read again after a change here, and every REFRESH_BEATS beats in any
   * case (what changed behind the engine's back); `beat` counts a heartbeat.
   */
  async current(beat = false): Promise<Record<string, string>> {
    const gen = this.generation();
    const c = this.cache;
    if (c && c.gen === gen && c.beats < REFRESH_BEATS) {
      if (beat) c.beats++;
      return c.value;
    }
    const value = await this.repo.topLevel(this.db);
    this.cache = { value, gen, beats: beat ? 1 : 0 };
    return value;
  }

  /** When all digests last matched this peer's (ISO), null if never in this run. */
  agreedAt(peer: string): string | null {
    return this.views.get(peer)?.agreedAt?.toISOString() ?? null;
  }

  private view(peer: string): PeerView {
    let v = this.views.get(peer);
    if (!v) {
      v = { signature: null, streak: 0, agreedAt: null, running: false, lastRunAt: 0 };
      this.views.set(peer, v);
    }
    return v;
  }

  /**
   * A peer's heartbeat: compares its digests with ours (a peer without them is left alone). While
   * the peer holds changes beyond our watermarks (`ahead`), differences are in flight: catch-up
   * brings them, and reconciling meanwhile would only do its work twice.
   */
  async heartbeat(hb: Heartbeat, ahead = false): Promise<void> {
    try {
      await this.compare(hb, ahead);
    } catch (e) {
      this.logger.warn(`ranges of ${hb.origin} not compared: ${(e as Error).message}`);
    }
  }

  private async compare(hb: Heartbeat, ahead: boolean): Promise<void> {
    if (!hb.ranges || this.stopped) return;
    const theirs = hb.ranges;
    const ours = await this.current();
    const keys = [...new Set([...Object.keys(ours), ...Object.keys(theirs)])].sort();
    const differing = keys.filter((k) => (ours[k] ?? '0:0') !== (theirs[k] ?? '0:0'));
    const v = this.view(hb.origin);
    if (differing.length === 0) {
      v.agreedAt = new Date();
      v.signature = null;
      v.streak = 0;
      return;
    }
    // both quiet: the same differences, the peer's streams where they were, nothing moved here
    const signature = JSON.stringify([
      differing.map((k) => [k, ours[k] ?? null, theirs[k] ?? null]),
      hb.ownedHead,
      hb.sharedHead,
      hb.state,
      hb.shared,
      this.generation(),
    ]);
    if (ahead) {
      v.signature = null;
      v.streak = 0;
      return;
    }
    v.streak = v.signature === signature ? v.streak + 1 : 1;
    v.signature = signature;
    if (v.streak < 2 || v.running || hb.phase !== 'ready' || !this.ready()) return;
    if (Date.now() - v.lastRunAt < Math.max(1000, 5 * this.heartbeatMs)) return;
    v.running = true;
    v.lastRunAt = Date.now();
    void this.reconcile(hb.origin, differing)
      .catch((e) => this.logger.warn(`reconciliation with ${hb.origin} failed: ${(e as Error).message}`))
      .finally(() => {
        v.running = false;
        v.signature = null;
        v.streak = 0;
      });
  }

  /** Reconciles the differing (model, owner)s with one peer; returns the rows repaired. */
  async reconcile(peer: string, keys: string[]): Promise<number> {
    const gen = this.generation();
    let repaired = 0;
    let counted = false;
    for (const key of keys) {
      if (this.stopped) break;
      const sep = key.indexOf(':');
      const m = rangeModel(key.slice(0, sep));
      const owner = key.slice(sep + 1);
      if (!m || !UUID.test(owner)) continue;
      // owned data only with its owner, whose copy is the truth (ours, when we are the owner): a
      // peer that is not the owner leaves it to the owner's heartbeats (none while it is offline)
      if (m.kind === 'shared' ? owner !== NIL_OWNER : owner !== peer) continue;
      if (!counted) {
        this.metrics.reconciliations.inc();
        counted = true;
      }
      try {
        repaired += await this.reconcileKey(peer, m, owner, gen);
      } catch (e) {
        if (e instanceof Moved) break;
        throw e;
      }
    }
    if (repaired || this.collectedDropped) this.changed();
    this.collectedDropped = 0;
    return repaired;
  }

  private async reconcileKey(peer: string, m: RangeModel, owner: string, gen: number): Promise<number> {
    const theirs = (await this.peers.rangesBuckets(peer, { model: m.name, owner })).buckets;
    const ours = await this.repo.buckets(this.db, m.name, owner);
    const differing = differingBuckets(ours, theirs);
    if (differing.length === 0) return 0;
    const counts = new Map(theirs.map((b) => [b.bucket, b.count]));
    let repaired = 0;
    for (const batch of batches(differing, counts)) {
      const page = await this.fetchRows(peer, m, owner, batch);
      if (this.generation() !== gen) throw new Moved();
      repaired += await this.applyBatch(peer, m, owner, batch, page);
    }
    return repaired;
  }

  /** Every page of the peer's rows in those buckets. */
  private async fetchRows(peer: string, m: RangeModel, owner: string, buckets: number[]): Promise<RangeRowsPage> {
    const all: RangeRowsPage = { rows: [], tombstones: [], records: [], hashes: [], next: null };
    let after: string | null = null;
    for (let i = 0; i < 10_000; i++) {
      const page: RangeRowsPage = await this.peers.rangesRows(peer, { model: m.name, owner, buckets, after });
      all.rows.push(...(page.rows ?? []));
      all.tombstones.push(...(page.tombstones ?? []));
      all.records.push(...(page.records ?? []));
      all.hashes.push(...(page.hashes ?? []));
      this.metrics.reconcileRowsReceived.inc(
        { model: m.name },
        (page.rows?.length ?? 0) + (page.tombstones?.length ?? 0) + (page.records?.length ?? 0),
      );
      if (!page.next) break;
      after = page.next;
    }
    return all;
  }

  private async applyBatch(
    peer: string,
    m: RangeModel,
    owner: string,
    buckets: number[],
    page: RangeRowsPage,
  ): Promise<number> {
    if (m.kind === 'shared') return this.mergeShared(peer, m.model, page);
    const ids: string[] = [];
    let n = 0;
    if (m.kind === 'owned') {
      const model = m.model;
      if (page.hashes.length !== page.rows.length)
        throw new RejectedMessageError('invalid_row', 'rows and hashes differ');
      const remote = new Map<string, { row: OwnedRow; hash: string }>();
      page.rows.forEach((values, i) => {
        if (!Array.isArray(values) || values.length !== model.columns.length)
          throw new RejectedMessageError('invalid_row', `a ${model.name} row of the wrong width`);
        const parsed = model.wire.safeParse(rowFromValues(model, values));
        if (!parsed.success)
          throw new RejectedMessageError('invalid_row', `${model.name}: ${parsed.error.issues[0].message}`);
        const row = parsed.data as OwnedRow;
        if (row.device_id !== owner)
          throw new RejectedMessageError('not_owner', `${model.name} ${row.id} not of ${owner}`);
        remote.set(row.id, { row, hash: String(page.hashes[i]) });
      });
      const newest = [...remote.values()].reduce((v, r) => (r.row.version > v ? r.row.version : v), '');
      if (newest) this.clock.checkDrift(newest);
      await this.db.transaction().execute(async (tx) => {
        if (newest) await this.clock.observe(tx, newest);
        const local = await this.repo.localHashes(tx, m, owner, buckets);
        const write = [...remote.values()].filter((r) => local.get(r.row.id) !== r.hash).map((r) => r.row);
        const drop = [...local.keys()].filter((id) => !remote.has(id));
        if (write.length) await this.owned.upsert(tx, model, write);
        if (drop.length)
          await sql`delete from ${sql.table(model.table)} where device_id = ${owner}::uuid and id = any(${drop}::uuid[])`.execute(
            tx,
          );
        ids.push(...write.map((r) => r.id), ...drop);
        n = write.length + drop.length;
      });
    } else {
      if (page.hashes.length !== page.tombstones.length)
        throw new RejectedMessageError('invalid_row', 'tombstones and hashes differ');
      const remote = new Map<string, { t: Tombstone; hash: string }>();
      page.tombstones.forEach((t, i) => {
        if (!t || !ownedModel(t.model) || !UUID.test(t.id) || !HLC.test(t.version) || t.device_id !== owner)
          throw new RejectedMessageError('invalid_row', `tombstones[${i}] is not a tombstone of ${owner}`);
        remote.set(`${t.model}:${t.id}`, {
          t: { model: t.model, id: t.id, device_id: t.device_id, version: t.version },
          hash: String(page.hashes[i]),
        });
      });
      const newest = [...remote.values()].reduce((v, r) => (r.t.version > v ? r.t.version : v), '');
      if (newest) this.clock.checkDrift(newest);
      await this.db.transaction().execute(async (tx) => {
        if (newest) await this.clock.observe(tx, newest);
        const local = await this.repo.localHashes(tx, m, owner, buckets);
        // Tombstones the owner holds and we do not, at or below our horizon for it: we collected
        // them (every device had seen past them) before the owner did. Its collection lags ours;
        // bringing them back would be undone by our next collection. Neither written nor a repair.
        const horizon = await this.tombstoneHorizon(tx, owner);
        const collectedHere = (t: Tombstone) =>
          horizon !== null && encodeCursor({ version: t.version, kind: TOMBSTONE_KIND, id: t.id }) <= horizon;
        const write = [...remote.entries()]
          .filter(([k, r]) => local.get(k) !== r.hash && (local.has(k) || !collectedHere(r.t)))
          .map(([, r]) => r.t);
        const drop = [...local.keys()].filter((k) => !remote.has(k));
        if (write.length) {
          const json = JSON.stringify(write);
          // the owner's tombstone as it is, even over a version that looks newer here (damaged)
          await sql`insert into owned_tombstones (model, id, device_id, version)
            select x.model, x.id, x.device_id, x.version from jsonb_to_recordset(${json}::jsonb) as x(model text, id uuid, device_id uuid, version text)
            on conflict (model, id) do update set version = excluded.version
            where owned_tombstones.device_id = excluded.device_id`.execute(tx);
          // and what it deletes (cascading as a delete does)
          await this.owned.applyTombstones(tx, write);
        }
        // Tombstones we hold that the owner does not: it collected them (every device had seen past
        // them), and so will we. Dropped, but not a repair: collection runs on each device in its
        // own time, and this difference is its lag, not damage.
        for (const k of drop) {
          const sep = k.indexOf(':');
          await sql`delete from owned_tombstones where model = ${k.slice(0, sep)} and id = ${k.slice(sep + 1)}::uuid
            and device_id = ${owner}::uuid`.execute(tx);
        }
        if (drop.length) {
          this.collectedDropped += drop.length;
          this.logger.debug(`dropped ${drop.length} tombstones of ${owner} that it collected`);
        }
        ids.push(...write.map((t) => t.id));
        n = write.length;
      });
    }
    this.report(m.name, owner, peer, n, ids);
    return n;
  }

  /** Merges the peer's records (field clocks; equal clocks with different values: a deterministic tie-break). */
  private async mergeShared(peer: string, model: SharedModel, page: RangeRowsPage): Promise<number> {
    const valid = page.records.map((r, i) => {
      const key = r && typeof r.key === 'string' ? decodeRecordKey(model, r.key) : null;
      if (!key) throw new RejectedMessageError('invalid_key', `records[${i}].key`);
      const s = r.state;
      if (!s || typeof s.values !== 'object' || typeof s.clocks !== 'object' || typeof s.updatedHlc !== 'string')
        throw new RejectedMessageError('invalid_row', `records[${i}].state`);
      for (const [field, value] of Object.entries(s.values)) {
        const spec = model.fields[field];
        if (!spec || !spec.schema.safeParse(value).success)
          throw new RejectedMessageError('invalid_field', `records[${i}].values.${field}`);
      }
      for (const [field, clock] of Object.entries(s.clocks))
        if (!model.fields[field] || typeof clock !== 'string' || !HLC.test(clock))
          throw new RejectedMessageError('invalid_field', `records[${i}].clocks.${field}`);
      if (s.deletedHlc !== null && (typeof s.deletedHlc !== 'string' || !HLC.test(s.deletedHlc) || !model.deletable))
        throw new RejectedMessageError('invalid_field', `records[${i}].deletedHlc`);
      return { key, keyText: r.key, state: s };
    });
    const newest = valid.reduce((v, r) => (r.state.updatedHlc > v ? r.state.updatedHlc : v), '');
    if (newest) this.clock.checkDrift(newest);
    const ids: string[] = [];
    await this.db.transaction().execute(async (tx) => {
      if (newest) await this.clock.observe(tx, newest);
      for (const { key, keyText, state } of valid) {
        const current = await this.shared.load(tx, model, key, true);
        const next = repairMerge(current ?? initialState(model), state, peer, this.selfId);
        if (current && JSON.stringify(next) === JSON.stringify(current)) continue;
        await this.shared.save(tx, model, key, next);
        ids.push(keyText);
      }
    });
    this.report(model.name, NIL_OWNER, peer, ids.length, ids);
    return ids.length;
  }

  private report(model: string, owner: string, peer: string, n: number, ids: string[]): void {
    if (!n) return;
    this.metrics.repairs.inc({ model }, n);
    const more = ids.length > 20 ? ` and ${ids.length - 20} more` : '';
    this.logger.log(
      `repaired ${n} ${model} rows${owner === NIL_OWNER ? '' : ` of ${owner}`} from ${peer}: ${ids.slice(0, 20).join(', ')}${more}`,
    );
  }

  /** Folds the triggers' deltas now and then, heartbeats or not (offline, nothing keeps them small otherwise). */
  start(foldEveryMs = 30_000): void {
    this.timer = setInterval(() => {
      this.repo.fold(this.db).catch((e) => this.logger.warn(`range deltas not folded: ${(e as Error).message}`));
    }, foldEveryMs);
    this.timer.unref();
  }

  stop(): void {
    this.stopped = true;
    if (this.timer) clearInterval(this.timer);
  }
}

/** Buckets whose hash or count differ between two bucket lists. */
export function differingBuckets(ours: BucketDigest[], theirs: BucketDigest[]): number[] {
  const a = new Map(ours.map((b) => [b.bucket, `${b.hash}:${b.count}`]));
  const b = new Map(theirs.map((x) => [x.bucket, `${x.hash}:${x.count}`]));
  const out: number[] = [];
  for (const k of new Set([...a.keys(), ...b.keys()])) if ((a.get(k) ?? '0:0') !== (b.get(k) ?? '0:0')) out.push(k);
  return out.sort((x, y) => x - y);
}

/** Batches of at most RANGES_ROWS_MAX_BUCKETS buckets and about BATCH_ROWS rows (by the peer's counts). */
export function batches(buckets: number[], counts: Map<number, number>): number[][] {
  const out: number[][] = [];
  let cur: number[] = [];
  let rows = 0;
  for (const b of buckets) {
    const n = counts.get(b) ?? 0;
    if (cur.length && (cur.length >= RANGES_ROWS_MAX_BUCKETS || rows + n > BATCH_ROWS)) {
      out.push(cur);
      cur = [];
      rows = 0;
    }
    cur.push(b);
    rows += n;
  }
  if (cur.length) out.push(cur);
  return out;
}

/**
 * The merge of a repair: mergeStates, and where both hold one field under the same clock with
 * different values (a damaged copy: one stamp, one value), the value of the stamp's issuer when it
 * is one of the two, else the greater JSON. Every pair of devices settles on the same value.
 */
export function repairMerge(local: SharedState, remote: SharedState, peer: string, self: string): SharedState {
  const next = mergeStates(local, remote);
  for (const [field, clock] of Object.entries(remote.clocks)) {
    if (local.clocks[field] !== clock) continue;
    const a = JSON.stringify(local.values[field] ?? null);
    const b = JSON.stringify(remote.values[field] ?? null);
    if (a === b) continue;
    let node: string | null = null;
    try {
      node = decodeHlc(clock).node;
    } catch {
      /* not a stamp: the JSON decides */
    }
    const takeRemote = node === peer ? true : node === self ? false : b > a;
    if (takeRemote) next.values = { ...next.values, [field]: remote.values[field] };
  }
  return next;
}
