import { randomUUID } from 'node:crypto';
import { sql } from 'kysely';
import type { Db } from '@lib/db';
import { bucketIntervals, RangesRepository } from '@lib/sync';
import { migrations } from '../../migrations';
import { DB_MODES, useTestDb } from './storage-db';

/**
 * Anti-entropy's range digests (migration 20261204000000_anti_entropy): the statement triggers
 * keep sync_ranges equal to a from-scratch recomputation through any mix of batched inserts,
 * updates and deletes, on Postgres and PGlite, whatever the session's TimeZone and DateStyle.
 */

const TABLES: { table: string; model: string; owner: string; bucket: string }[] = [
  { table: 'volumes', model: 'volumes', owner: 'device_id', bucket: 'id' },
  { table: 'locations', model: 'locations', owner: 'device_id', bucket: 'id' },
  { table: 'entries', model: 'entries', owner: 'device_id', bucket: 'id' },
  { table: 'owned_tombstones', model: 'owned_tombstones', owner: 'device_id', bucket: 'id' },
  { table: 'tags', model: 'tags', owner: `'00000000-0000-0000-0000-000000000000'::uuid`, bucket: 'id' },
  { table: 'albums', model: 'albums', owner: `'00000000-0000-0000-0000-000000000000'::uuid`, bucket: 'id' },
  {
    table: 'user_metadata',
    model: 'user_metadata',
    owner: `'00000000-0000-0000-0000-000000000000'::uuid`,
    bucket: 'entry_id',
  },
  {
    table: 'tag_entries',
    model: 'tag_entries',
    owner: `'00000000-0000-0000-0000-000000000000'::uuid`,
    bucket: 'tag_id',
  },
];

type RangeRow = { model: string; owner: string; bucket: number; hash: string; count: number };

async function kept(db: Db): Promise<RangeRow[]> {
  await sql`select sync_ranges_fold()`.execute(db);
  const r = await sql<RangeRow>`select model, owner::text as owner, bucket, hash::text as hash, count from sync_ranges
    where hash <> 0 or count <> 0 order by model, owner, bucket`.execute(db);
  return r.rows;
}

async function recomputed(db: Db): Promise<RangeRow[]> {
  const parts = TABLES.map(
    (t) => `select '${t.model}'::text as model, ${t.owner} as owner, sync_bucket(${t.bucket}) as bucket,
      sync_row_hash_${t.table}(x) as h from ${t.table} x`,
  ).join(' union all ');
  const r =
    await sql<RangeRow>`select model, owner::text as owner, bucket, bit_xor(h)::text as hash, count(*)::int as count
    from (${sql.raw(parts)}) s group by model, owner, bucket order by model, owner, bucket`.execute(db);
  return r.rows;
}

const OWNERS = [randomUUID(), randomUUID()];
const rand = (n: number) => Math.floor(Math.random() * n);
const hlc = (ms: number, owner: string) => `${String(ms).padStart(15, '0')}-000000-${owner}`;

async function randomWrites(db: Db, round: number): Promise<void> {
  const owner = OWNERS[round % 2];
  const n = 200 + rand(800);
  const ms = 1_700_000_000_000 + round * 1000;
  // a batch of entries (one statement), some with µs timestamps, under an odd TimeZone/DateStyle
  await db.transaction().execute(async (tx) => {
    await sql`set local timezone = 'Asia/Kathmandu'`.execute(tx);
    await sql`set local datestyle = 'SQL, DMY'`.execute(tx);
    await sql`insert into entries (id, device_id, location_id, name, path, kind, size_bytes, modified_at, version, updated_at)
      select gen_random_uuid(), ${owner}::uuid, gen_random_uuid(), 'e' || g, '/p/' || g, case when g % 2 = 0 then 'file' else 'dir' end,
        g * 10, now() - (g || ' seconds')::interval, ${hlc(ms, owner)}, now()
      from generate_series(1, ${n}) g`.execute(tx);
  });
  await sql`insert into volumes (id, device_id, name, mount_point, capacity_bytes, free_bytes, version, updated_at)
    select gen_random_uuid(), ${owner}::uuid, 'v' || g, '/m', 100, case when g % 3 = 0 then null else g end, ${hlc(ms, owner)}, now()
    from generate_series(1, 20) g`.execute(db);
  await sql`insert into locations (id, device_id, volume_id, name, path, version, updated_at)
    select gen_random_uuid(), ${owner}::uuid, case when g % 2 = 0 then null else gen_random_uuid() end, 'l' || g, '/l', ${hlc(ms, owner)}, now()
    from generate_series(1, 20) g`.execute(db);
  // updates of a random subset (one statement), one that changes nothing, deletes into tombstones
  await sql`update entries set name = name || 'x', version = ${hlc(ms + 1, owner)} where device_id = ${owner}::uuid and random() < 0.3`.execute(
    db,
  );
  await sql`update entries set name = name where random() < 0.1`.execute(db);
  await sql`update volumes set free_bytes = null where random() < 0.5`.execute(db);
  await sql`with d as (delete from entries where device_id = ${owner}::uuid and random() < 0.2 returning id, device_id)
    insert into owned_tombstones (model, id, device_id, version) select 'entries', id, device_id, ${hlc(ms + 2, owner)} from d
    on conflict do nothing`.execute(db);
  await sql`delete from owned_tombstones where random() < 0.1`.execute(db);
  // shared records: tags, memberships and metadata, with clocks and deletes
  await sql`insert into tags (id, name, color, clocks, updated_hlc)
    select gen_random_uuid(), 't' || g, case when g % 2 = 0 then null else 'red' end,
      jsonb_build_object('name', ${hlc(ms, owner)}::text), ${hlc(ms, owner)} from generate_series(1, 30) g`.execute(db);
  await sql`update tags set deleted_hlc = ${hlc(ms + 3, owner)} where random() < 0.2`.execute(db);
  await sql`update tags set clocks = clocks || jsonb_build_object('color', ${hlc(ms + 4, owner)}::text), color = 'blue' where random() < 0.3`.execute(
    db,
  );
  await sql`insert into tag_entries (tag_id, entry_id, present, clocks, updated_hlc)
    select t.id, gen_random_uuid(), true, '{}', ${hlc(ms, owner)} from tags t where random() < 0.3
    on conflict do nothing`.execute(db);
  await sql`update tag_entries set present = not present where random() < 0.3`.execute(db);
  await sql`insert into user_metadata (entry_id, favorite, notes, clocks, updated_hlc)
    select id, random() < 0.5, case when random() < 0.5 then null else 'n' end, '{}', ${hlc(ms, owner)}
    from entries where random() < 0.05 on conflict do nothing`.execute(db);
  await sql`delete from user_metadata where random() < 0.2`.execute(db);
}

describe.each(DB_MODES)('sync_ranges (%s)', (mode) => {
  let db: Db;
  useTestDb(mode, (d) => (db = d));

  it('equals a from-scratch recomputation after random inserts, updates and deletes', async () => {
    for (let round = 0; round < 6; round++) {
      await randomWrites(db, round);
      expect(await kept(db)).toEqual(await recomputed(db));
    }
    const total = await sql<{ n: number }>`select count(*)::int as n from entries`.execute(db);
    expect(Number(total.rows[0].n)).toBeGreaterThan(0);
    // the migration fills sync_ranges from the rows already there (and its down undoes it)
    const before = await kept(db);
    const m = migrations['20261204000000_anti_entropy'];
    await m.down!(db as never);
    await m.up(db as never);
    expect(await kept(db)).toEqual(before);
    // deleting everything brings every bucket back to zero
    for (const t of TABLES) await sql`delete from ${sql.table(t.table)}`.execute(db);
    expect(await kept(db)).toEqual([]);
  });

  it('hashes a row the same whatever the session TimeZone and DateStyle; a null is not an empty string', async () => {
    const owner = OWNERS[0];
    const id = randomUUID();
    await sql`insert into volumes (id, device_id, name, mount_point, capacity_bytes, free_bytes, version, updated_at)
      values (${id}::uuid, ${owner}::uuid, 'v', '', 1, null, ${hlc(1, owner)}, '2026-01-02T03:04:05.678Z')`.execute(db);
    const hashUnder = async (tz: string, style: string) =>
      db.transaction().execute(async (tx) => {
        await sql`select set_config('timezone', ${tz}, true), set_config('datestyle', ${style}, true)`.execute(tx);
        const r = await sql<{
          h: string;
        }>`select sync_row_hash_volumes(v)::text as h from volumes v where id = ${id}::uuid`.execute(tx);
        return r.rows[0].h;
      });
    const h = await hashUnder('UTC', 'ISO, MDY');
    expect(await hashUnder('America/St_Johns', 'SQL, DMY')).toBe(h);
    expect(await hashUnder('Pacific/Chatham', 'German')).toBe(h);
    await sql`update volumes set free_bytes = 0 where id = ${id}::uuid`.execute(db);
    expect(await hashUnder('UTC', 'ISO, MDY')).not.toBe(h);
    await sql`update volumes set free_bytes = null, mount_point = 'NULL' where id = ${id}::uuid`.execute(db);
    expect(await hashUnder('UTC', 'ISO, MDY')).not.toBe(h);
  });

  it('reads top-level digests and buckets, and a bucket is an interval of ids', async () => {
    const repo = new RangesRepository();
    const top = await repo.topLevel(db);
    const key = `volumes:${OWNERS[0]}`;
    expect(top[key]).toMatch(/^-?\d+:1$/);
    const buckets = await repo.buckets(db, 'volumes', OWNERS[0]);
    expect(buckets).toHaveLength(1);
    const [lo, hi] = bucketIntervals([buckets[0].bucket])[0];
    const r = await sql<{ n: number }>`select count(*)::int as n from volumes
      where id between ${lo}::uuid and ${hi}::uuid and sync_bucket(id) = ${buckets[0].bucket}`.execute(db);
    expect(Number(r.rows[0].n)).toBe(1);
    expect(bucketIntervals([0, 1, 2, 4095])).toEqual([
      ['00000000-0000-0000-0000-000000000000', '002fffff-ffff-ffff-ffff-ffffffffffff'],
      ['fff00000-0000-0000-0000-000000000000', 'ffffffff-ffff-ffff-ffff-ffffffffffff'],
    ]);
  });

  (mode === 'postgres' ? it : it.skip)(
    'writers of the same buckets never wait on each other (a later transaction may commit first)',
    async () => {
      const owner = OWNERS[1];
      // ids of one bucket (the same first 12 bits)
      const ids = (n: number) => Array.from({ length: n }, () => `abc${randomUUID().slice(3)}`);
      const insert = (tx: Db, batch: string[]) =>
        sql`insert into entries (id, device_id, location_id, name, path, kind, size_bytes, modified_at, version, updated_at)
          select x, ${owner}::uuid, gen_random_uuid(), 'n', '/p', 'file', 1, now(), ${hlc(5, owner)}, now()
          from unnest(${batch}::uuid[]) x`.execute(tx);
      let wrote!: () => void;
      const written = new Promise<void>((r) => (wrote = r));
      let release!: () => void;
      const mayCommit = new Promise<void>((r) => (release = r));
      const first = db.transaction().execute(async (tx) => {
        await insert(tx, ids(50));
        wrote();
        await mayCommit;
      });
      await written;
      const second = db.transaction().execute((tx) => insert(tx, ids(50)));
      const blocked = new Promise((_, reject) => setTimeout(() => reject(new Error('the second writer waited')), 5000));
      await Promise.race([second, blocked]);
      release();
      await first;
      expect(await kept(db)).toEqual(await recomputed(db));
    },
  );
});
