import { randomUUID } from 'node:crypto';
import { sql } from 'kysely';
import { digestOf, metricSum, must, peerIn, statusOf, waitConverged } from '../support/api';
import { clusterPerTest } from '../support/cluster';
import type { TestDevice } from '../support/device-harness';
import { waitFor } from '../support/device-harness';
import { queryDb } from '../support/db-queries';
import { createEntries, createLocation, createTag } from '../support/fixtures';

/**
 * Issue 10 / docs/design.md "Anti-entropy": heartbeats carry range digests; a difference that
 * persists while both devices are quiet is reconciled bucket by bucket, so rows damaged behind the
 * engine's back (no change message will ever carry them) are repaired from their owner (owned
 * data) or through the field-clock merge (shared data), at a cost proportional to the damage.
 */
const HEARTBEAT = 300;

async function tombstoneCount(d: TestDevice, ids: string[]): Promise<number> {
  const r = await sql<{
    n: number;
  }>`select count(*)::int as n from owned_tombstones where id = any(${ids}::uuid[])`.execute(d.db);
  return Number(r.rows[0].n);
}

/** sync_ranges of a device, as text: equal on two devices exactly when they hold the same rows. */
async function ranges(d: TestDevice): Promise<string> {
  await sql`select sync_ranges_fold()`.execute(d.db);
  const r = await sql<{
    model: string;
    owner: string;
    bucket: number;
    hash: string;
    count: number;
  }>`select model, owner::text as owner, bucket, hash::text as hash, count from sync_ranges
    where hash <> 0 or count <> 0 order by model, owner, bucket`.execute(d.db);
  return JSON.stringify(r.rows);
}

describe('anti-entropy: range digests in heartbeats repair silent damage', () => {
  const newCluster = clusterPerTest({ heartbeatIntervalMs: HEARTBEAT });

  it('repairs deleted, renamed and untombstoned owned rows from their owner and a damaged shared field, at a cost bounded by the damage', async () => {
    const cluster = await newCluster();
    const [a, b, c] = await cluster.startDevices(['a', 'b', 'c']);
    const loc = await createLocation(a, 'a');
    const ids = await createEntries(a, loc, 40, 'e');
    const tag = await createTag(a, 'holiday', 'red');
    await waitConverged([a, b, c], { entries: 40, tags: 1 });

    // C goes away: while it has not acknowledged A's delete, A's tombstone is kept everywhere
    await cluster.close(c);
    const gone = ids[39];
    await must(a, 'DELETE', `/entries/${gone}`);
    await waitConverged([a, b], { entries: 39 });
    await waitFor('the tombstone on B', async () => (await tombstoneCount(b, [gone])) === 1);
    // A and B agree on every range before the damage
    await waitFor('A and B agreeing', async () => {
      const [sa, sb] = await Promise.all([statusOf(a), statusOf(b)]);
      return !!peerIn(sa, b.deviceId)?.agreedAt && !!peerIn(sb, a.deviceId)?.agreedAt;
    });
    const expected = await digestOf(a);
    const before = {
      repairsA: await metricSum(a, 'sync_repairs_total'),
      repairsB: await metricSum(b, 'sync_repairs_total'),
      receivedB: await metricSum(b, 'sync_reconcile_rows_received_total'),
      reconciliationsB: await metricSum(b, 'sync_reconciliations_total'),
    };

    // behind B's engine: 5 of A's entries deleted, 3 renamed (version kept), A's tombstone dropped,
    // the shared tag's name changed (its field clock kept)
    const deleted = ids.slice(0, 5);
    const renamed = ids.slice(5, 8);
    await sql`delete from entries where id = any(${deleted}::uuid[])`.execute(b.db);
    await sql`update entries set name = 'damaged' where id = any(${renamed}::uuid[])`.execute(b.db);
    await sql`delete from owned_tombstones where id = ${gone}::uuid`.execute(b.db);
    await sql`update tags set name = 'damaged' where id = ${tag}::uuid`.execute(b.db);
    expect(JSON.stringify(await digestOf(b))).not.toBe(JSON.stringify(expected));

    // with no further writes, everything comes back within 30 s
    await waitFor(
      'B repaired',
      async () => {
        if ((await tombstoneCount(b, [gone])) !== 1) throw new Error('tombstone not restored');
        if ((await ranges(a)) !== (await ranges(b))) throw new Error('sync_ranges differ');
        return true;
      },
      30_000,
      250,
    );
    expect(await digestOf(b)).toEqual(expected);
    expect(await digestOf(a)).toEqual(expected);
    for (const id of renamed)
      expect((await must(b, 'GET', `/entries/${id}`)).name).toBe((await must(a, 'GET', `/entries/${id}`)).name);
    expect((await must(b, 'GET', `/tags/${tag}`)).name).toBe('holiday');
    // A, the owner and the stamp's issuer, kept its copy
    expect((await must(a, 'GET', `/tags/${tag}`)).name).toBe('holiday');

    // Cost. Repairs: each damaged row is rewritten once (5 + 3 + 1 + 1 = 10): rows are compared by
    // hash within a differing bucket, so the bucket's intact siblings are received but not
    // rewritten; the bound allows each row a second pass (a reconciliation interrupted by a write).
    const damaged = deleted.length + renamed.length + 2;
    const repairsB = (await metricSum(b, 'sync_repairs_total')) - before.repairsB;
    expect(repairsB).toBeGreaterThanOrEqual(damaged);
    expect(repairsB).toBeLessThanOrEqual(2 * damaged);
    expect((await metricSum(a, 'sync_repairs_total')) - before.repairsA).toBe(0);
    // Rows received: the rows of the differing buckets only (≤ 10 buckets of 4096; with 39 entries
    // a bucket holds ~1), never the 39 entries twice: at most 2 passes × (damaged + siblings).
    const received = (await metricSum(b, 'sync_reconcile_rows_received_total')) - before.receivedB;
    expect(received).toBeGreaterThanOrEqual(damaged); // the deleted rows come back from A as rows too
    expect(received).toBeLessThanOrEqual(2 * (damaged + 10));
    expect((await metricSum(b, 'sync_reconciliations_total')) - before.reconciliationsB).toBeGreaterThanOrEqual(1);
    // and both agree again
    await waitFor('A and B agreeing again', async () => {
      const sb = await statusOf(b);
      const at = peerIn(sb, a.deviceId)?.agreedAt;
      return !!at && Date.parse(at) > Date.now() - 5000;
    });
  });

  /**
   * Each device collects tombstones in its own time. One collected here (every device had seen past
   * it) and still held by its owner is the owner's lag, not damage: anti-entropy does not bring it
   * back (chaos seeds 5003, 5004, 7005, 7006, 7008, 7015 and 8007 counted such "repairs"), even
   * after a device without a watermark appeared (which lowers the horizon), and once the owner
   * collects it too, the devices agree.
   */
  it('does not bring back a tombstone this device collected before its owner did', async () => {
    const cluster = await newCluster();
    const [a, b, c] = await cluster.startDevices(['a', 'b', 'c']);
    const loc = await createLocation(a, 'a');
    const ids = await createEntries(a, loc, 10, 'e');
    await waitConverged([a, b, c], { entries: 10 });
    // A's collection held back: behind its engine, A knows one more device, which never reports
    // a watermark (B and C do not know it, so their collection is not)
    const ghost = randomUUID();
    await sql`insert into devices (id, name, library_id, is_self, online)
      values (${ghost}::uuid, 'ghost', ${a.config.libraryId}::uuid, false, false)`.execute(a.db);
    const gone = ids[0];
    await must(a, 'DELETE', `/entries/${gone}`);
    await waitConverged([a, b, c], { entries: 9 });
    await waitFor('B and C collecting the tombstone', async () => {
      const held = await Promise.all([b, c].map((d) => tombstoneCount(d, [gone])));
      return held.every((n) => n === 0);
    });
    // and B then learns of a device that has no watermark yet (one joining, as in chaos seed 8007):
    // B's horizon drops, but what it collected before stays collected
    await sql`insert into devices (id, name, library_id, is_self, online)
      values (${randomUUID()}::uuid, 'newcomer', ${b.config.libraryId}::uuid, false, false)`.execute(b.db);
    const before = await Promise.all([b, c].map((d) => metricSum(d, 'sync_repairs_total')));
    const reconciled = await Promise.all([b, c].map((d) => metricSum(d, 'sync_reconciliations_total')));
    // A, the owner, still holds it: B and C see A's tombstone digest differ, reconcile, write nothing
    expect(await tombstoneCount(a, [gone])).toBe(1);
    await waitFor(
      'B and C reconciling with A',
      async () => {
        const n = await Promise.all([b, c].map((d) => metricSum(d, 'sync_reconciliations_total')));
        return n[0] > reconciled[0] && n[1] > reconciled[1];
      },
      30_000,
      250,
    );
    for (const [i, d] of [b, c].entries()) {
      expect(await tombstoneCount(d, [gone])).toBe(0);
      expect(await metricSum(d, 'sync_repairs_total')).toBe(before[i]);
    }
    // once A no longer waits for the ghost, it collects the tombstone too, and all three agree
    await sql`update devices set removed_at = now() where id = ${ghost}::uuid`.execute(a.db);
    await waitFor('A collecting it', async () => (await tombstoneCount(a, [gone])) === 0, 30_000, 250);
    await waitFor('A, B and C agreeing', async () => {
      const [sb, sc] = await Promise.all([statusOf(b), statusOf(c)]);
      const recent = (at: string | null | undefined) => !!at && Date.parse(at) > Date.now() - 3000;
      return recent(peerIn(sb, a.deviceId)?.agreedAt) && recent(peerIn(sc, a.deviceId)?.agreedAt);
    });
    await waitConverged([a, b, c], { entries: 9 });
    for (const [i, d] of [b, c].entries()) expect(await metricSum(d, 'sync_repairs_total')).toBe(before[i]);
  });

  /**
   * A large library differing in a few rows: only the differing buckets travel. 1,000,000 entries
   * of A, written behind the engine's back into both databases (identical rows, versions below
   * what A has published and B has applied: already synced as far as either knows), then 10 rows
   * damaged on B. `AE_ROWS` sets the number of rows.
   */
  it('with 1,000,000 entries differing in 10 rows, receives only the rows of the differing buckets', async () => {
    const rows = Number(process.env.AE_ROWS ?? 1_000_000);
    const cluster = await newCluster();
    const [a0, b0] = await cluster.startDevices(['a', 'b']);
    const loc = await createLocation(a0, 'big');
    await waitConverged([a0, b0], { locations: 1 });
    // written while both are down: neither sees the other differ halfway
    await Promise.all([a0, b0].map((d) => cluster.close(d)));
    const seededIn = await Promise.all([a0, b0].map((d) => seedBehind(d.config.databaseUrl!, a0.deviceId, loc, rows)));
    const [a, b] = await Promise.all(
      [a0, b0].map((d) =>
        cluster.device(d.config.deviceName, {
          libraryId: d.config.libraryId,
          heartbeatIntervalMs: d.config.heartbeatIntervalMs,
          databaseUrl: d.config.databaseUrl,
          deviceId: d.deviceId,
        }),
      ),
    );
    const agreed = Date.now();
    await waitFor(
      'A and B agreeing on 1M rows',
      async () => {
        const at = peerIn(await statusOf(b), a.deviceId)?.agreedAt;
        return !!at && Date.parse(at) > agreed;
      },
      120_000,
      500,
    );
    // nothing was reconciled to get there: the rows were the same
    expect(await metricSum(b, 'sync_repairs_total')).toBe(0);
    const before = {
      received: await metricSum(b, 'sync_reconcile_rows_received_total'),
      repairs: await metricSum(b, 'sync_repairs_total'),
    };
    // 10 rows damaged on B: 4 deleted, 6 renamed
    const damaged = (
      await sql<{ id: string }>`select id from entries where device_id = ${a.deviceId}::uuid and name like 'f%'
        order by id limit 10`.execute(b.db)
    ).rows.map((r) => r.id);
    await sql`delete from entries where id = any(${damaged.slice(0, 4)}::uuid[])`.execute(b.db);
    await sql`update entries set name = 'damaged' where id = any(${damaged.slice(4)}::uuid[])`.execute(b.db);
    const started = Date.now();
    await waitFor(
      'B repaired',
      async () => {
        if ((await ranges(a)) !== (await ranges(b))) throw new Error('sync_ranges differ');
        return true;
      },
      60_000,
      1000,
    );
    const repairedMs = Date.now() - started;
    const received = (await metricSum(b, 'sync_reconcile_rows_received_total')) - before.received;
    const repairs = (await metricSum(b, 'sync_repairs_total')) - before.repairs;
    // the fullest bucket of A's entries: 10 differing buckets hold at most 10 × that many rows
    const r = await sql<{ n: number }>`select max(count)::int as n from sync_ranges
      where model = 'entries' and owner = ${a.deviceId}::uuid`.execute(a.db);
    const perBucket = Number(r.rows[0].n);
    console.log(
      `anti-entropy on ${rows} entries: seeded in ${seededIn.map((ms) => `${ms} ms`).join(' and ')}; 10 damaged rows repaired in ${repairedMs} ms, receiving ${received} rows (at most ${perBucket} per bucket)`,
    );
    expect(repairs).toBe(10);
    expect(received).toBeGreaterThanOrEqual(10);
    expect(received).toBeLessThanOrEqual(10 * perBucket);
    expect(received).toBeLessThan(rows / 1000);
    const names = await sql<{
      id: string;
      name: string;
    }>`select id, name from entries where id = any(${damaged}::uuid[])
      order by id`.execute(b.db);
    expect(names.rows.map((x) => x.id)).toEqual([...damaged].sort());
    expect(names.rows.every((x) => x.name !== 'damaged')).toBe(true);
    // (sync_ranges equal on both: every row's hash; /sync/digest would read the million rows again)
  }, 600_000);
});

/**
 * Writes `rows` entries of `owner` straight into a device's database, the same rows on every device (ids,
 * values and versions derived from the row number): versions a day old, below anything the owner
 * published or a peer applied since, so no stream carries them. Returns the milliseconds taken.
 */
async function seedBehind(databaseUrl: string, owner: string, location: string, rows: number): Promise<number> {
  const started = Date.now();
  const base = Date.parse('2026-01-01T00:00:00Z');
  // in id order: the indexes fill from one end (random ids would cost a page read per row)
  await queryDb(
    databaseUrl,
    `insert into entries (id, device_id, location_id, name, path, kind, size_bytes, modified_at, version, updated_at)
    select * from (
      select overlay(overlay(md5('ae-seed-' || i) placing '4' from 13) placing '8' from 17)::uuid as id,
        $1::uuid, $2::uuid, 'f' || i || '.jpg', '/big/f' || i, 'file', i, timestamptz '2025-12-01T00:00:00Z',
        lpad(($3::bigint + i / 10000)::text, 15, '0') || '-000000-' || $1,
        to_timestamp(($3::bigint + i / 10000) / 1000.0)
      from generate_series(1, $4::int) i) s
    order by id`,
    [owner, location, base, rows],
  );
  return Date.now() - started;
}
