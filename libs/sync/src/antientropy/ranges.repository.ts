import { RawBuilder, sql } from 'kysely';
import type { DbOrTx } from '@lib/db';
import { OwnedModel, ownedModel, SharedModel, sharedModel } from '../models/registry';
import type { OwnedRow, Tombstone } from '../owned/owned.repository';
import type { SharedState } from '../shared/merge';
import { SharedRepository } from '../shared/shared.repository';

/** The owner of shared models in sync_ranges. */
export const NIL_OWNER = '00000000-0000-0000-0000-000000000000';
/** The model name of owned tombstones in sync_ranges (one per owner, like the owned models). */
export const TOMBSTONE_RANGES = 'owned_tombstones';
export const BUCKETS = 4096;

/** What sync_ranges can be asked about: an owned model, the owned tombstones, or a shared model. */
export type RangeModel =
  | { kind: 'owned'; name: string; model: OwnedModel }
  | { kind: 'tombstones'; name: typeof TOMBSTONE_RANGES }
  | { kind: 'shared'; name: string; model: SharedModel };

export function rangeModel(name: string): RangeModel | null {
  if (name === TOMBSTONE_RANGES) return { kind: 'tombstones', name };
  const o = ownedModel(name);
  if (o) return { kind: 'owned', name, model: o };
  const s = sharedModel(name);
  if (s) return { kind: 'shared', name, model: s };
  return null;
}

export interface BucketDigest {
  bucket: number;
  /** XOR of the bucket's row hashes, signed 64-bit decimal text. */
  hash: string;
  count: number;
}

/** The rows of some buckets of one (model, owner), a page of them. */
export interface RangeRowsPage {
  /** Owned model: rows as value arrays in the model's column order. */
  rows: unknown[][];
  /** Owned tombstones. */
  tombstones: Tombstone[];
  /** Shared model: records with their field clocks. */
  records: { key: string; state: SharedState }[];
  /** The hash of each row or tombstone above, in order (decimal text). */
  hashes: string[];
  /** Pass back as `after` for the next page; null when this was the last. */
  next: string | null;
}

/** The uuid interval of each run of consecutive buckets (a bucket is the first 12 bits). */
export function bucketIntervals(buckets: readonly number[]): [string, string][] {
  const sorted = [...new Set(buckets)].sort((a, b) => a - b);
  const out: [string, string][] = [];
  const hex = (b: number) => b.toString(16).padStart(3, '0');
  for (let i = 0; i < sorted.length;) {
    let j = i;
    while (j + 1 < sorted.length && sorted[j + 1] === sorted[j] + 1) j++;
    out.push([
      `${hex(sorted[i])}00000-0000-0000-0000-000000000000`,
      `${hex(sorted[j])}fffff-ffff-ffff-ffff-ffffffffffff`,
    ]);
    i = j + 1;
  }
  return out;
}

/** `col` falls in one of the buckets: ranges of the index, not a scan. */
function inBuckets(col: string, buckets: readonly number[]): RawBuilder<unknown> {
  const ranges = bucketIntervals(buckets).map(([lo, hi]) => sql`(${sql.ref(col)} between ${lo}::uuid and ${hi}::uuid)`);
  return ranges.length ? sql`(${sql.join(ranges, sql` or `)})` : sql`false`;
}

/**
 * sync_ranges (kept by the triggers of migration 20261204000000_anti_entropy, through
 * sync_range_deltas folded before each read) and the rows behind its buckets. A top-level digest is the XOR of a (model, owner)'s bucket hashes and their count.
 */
export class RangesRepository {
  private readonly shared = new SharedRepository();

  /** Folds the committed deltas of the triggers into sync_ranges (before reading it). */
  async fold(db: DbOrTx): Promise<void> {
    await sql`select sync_ranges_fold()`.execute(db);
  }

  /** `model:owner` → `xor:count` of every non-empty (model, owner): one grouped read of sync_ranges. */
  async topLevel(db: DbOrTx): Promise<Record<string, string>> {
    await this.fold(db);
    const res = await sql<{ model: string; owner: string; h: string; n: string }>`
      select model, owner::text as owner, bit_xor(hash)::text as h, sum(count)::text as n
      from sync_ranges group by model, owner`.execute(db);
    const out: Record<string, string> = {};
    for (const r of res.rows) if (r.h !== '0' || r.n !== '0') out[`${r.model}:${r.owner}`] = `${r.h}:${r.n}`;
    return out;
  }

  /** The non-empty buckets of a (model, owner), in bucket order. */
  async buckets(db: DbOrTx, model: string, owner: string): Promise<BucketDigest[]> {
    await this.fold(db);
    const res = await sql<{ bucket: number; hash: string; count: number }>`
      select bucket, hash::text as hash, count from sync_ranges
      where model = ${model} and owner = ${owner}::uuid and (hash <> 0 or count <> 0) order by bucket`.execute(db);
    return res.rows.map((r) => ({ bucket: Number(r.bucket), hash: String(r.hash), count: Number(r.count) }));
  }

  /** A page of the rows of some buckets of a (model, owner), each with its hash. */
  async rows(
    db: DbOrTx,
    m: RangeModel,
    owner: string,
    buckets: readonly number[],
    after: string | null,
    limit: number,
  ): Promise<RangeRowsPage> {
    const page: RangeRowsPage = { rows: [], tombstones: [], records: [], hashes: [], next: null };
    if (m.kind === 'owned') {
      const model = m.model;
      const cols = sql.join(
        model.columns.map((col) =>
          model.timestampColumns.includes(col)
            ? sql`to_char(${sql.ref(`t.${col}`)} at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"') as ${sql.ref(col)}`
            : sql.ref(`t.${col}`),
        ),
      );
      const res = await sql<Record<string, unknown>>`
        select ${cols}, ${sql.raw(`sync_row_hash_${model.table}(t)`)}::text as _h from ${sql.table(model.table)} t
        where t.device_id = ${owner}::uuid and ${inBuckets('t.id', buckets)}
          and ${after ? sql`t.id > ${after}::uuid` : sql`true`}
        order by t.id limit ${limit}`.execute(db);
      for (const r of res.rows) {
        page.rows.push(model.columns.map((c) => r[c]));
        page.hashes.push(String(r._h));
      }
      if (res.rows.length === limit) page.next = String(res.rows[res.rows.length - 1].id);
    } else if (m.kind === 'tombstones') {
      const res = await sql<Tombstone & { _h: string }>`
        select t.model, t.id::text as id, t.device_id::text as device_id, t.version,
          sync_row_hash_owned_tombstones(t)::text as _h
        from owned_tombstones t
        where t.device_id = ${owner}::uuid and ${inBuckets('t.id', buckets)}
          and ${after ? sql`(t.id, t.model) > (${after.split('|')[0]}::uuid, ${after.split('|')[1] ?? ''})` : sql`true`}
        order by t.id, t.model limit ${limit}`.execute(db);
      for (const r of res.rows) {
        page.tombstones.push({ model: r.model, id: r.id, device_id: r.device_id, version: r.version });
        page.hashes.push(String(r._h));
      }
      const last = res.rows[res.rows.length - 1];
      if (res.rows.length === limit) page.next = `${last.id}|${last.model}`;
    } else {
      const model = m.model;
      const keys = sql.join(model.keyColumns.map((c) => sql.ref(c)));
      const afterKey = after ? after.split(':') : null;
      const cond = afterKey ? sql`(${keys}) > (${sql.join(afterKey.map((v) => sql`${v}::uuid`))})` : sql`true`;
      const res = await sql<Record<string, unknown>>`
        select * from ${sql.table(model.table)} where ${inBuckets(model.keyColumns[0], buckets)} and ${cond}
        order by ${keys} limit ${limit}`.execute(db);
      for (const row of res.rows)
        page.records.push({
          key: model.keyColumns.map((c) => String(row[c])).join(':'),
          state: this.shared.toState(model, row),
        });
      if (res.rows.length === limit) page.next = page.records[page.records.length - 1].key;
    }
    return page;
  }

  /** The hash of each of our rows (owned: by id) or tombstones (by `model:id`) of an owner in some buckets. */
  async localHashes(
    db: DbOrTx,
    m: RangeModel,
    owner: string,
    buckets: readonly number[],
  ): Promise<Map<string, string>> {
    const out = new Map<string, string>();
    if (m.kind === 'owned') {
      const res = await sql<{ k: string; h: string }>`
        select t.id::text as k, ${sql.raw(`sync_row_hash_${m.model.table}(t)`)}::text as h from ${sql.table(m.model.table)} t
        where t.device_id = ${owner}::uuid and ${inBuckets('t.id', buckets)}`.execute(db);
      for (const r of res.rows) out.set(r.k, String(r.h));
    } else if (m.kind === 'tombstones') {
      const res = await sql<{ k: string; h: string }>`
        select t.model || ':' || t.id::text as k, sync_row_hash_owned_tombstones(t)::text as h from owned_tombstones t
        where t.device_id = ${owner}::uuid and ${inBuckets('t.id', buckets)}`.execute(db);
      for (const r of res.rows) out.set(r.k, String(r.h));
    }
    return out;
  }
}

/** An owned row of a page as an object (columns in the model's order). */
export function rowFromValues(model: OwnedModel, values: unknown[]): OwnedRow {
  const row: Record<string, unknown> = {};
  for (let i = 0; i < model.columns.length; i++) row[model.columns[i]] = values[i];
  return row as OwnedRow;
}
