import { randomUUID } from 'node:crypto';
import { Migrator, sql } from 'kysely';
import { openDatabase, type Db } from '@lib/db';
import { migrations } from '../../migrations';
import { createEmptyDatabase, dropTestDatabases, tempDataDir } from '../support/databases';
import { DB_MODES, useTestDb } from './storage-db';

/**
 * The change feed's numbers follow commit order (migration change_feed_commit_order): a reader that
 * has read up to some number never finds a smaller one later. Two transactions write at once; the
 * one that wrote first commits last, after a reader has gone past the other's number.
 */

const OWNER = '00000000-0000-4000-8000-0000000000a1';

async function insertVolume(db: Db, name: string): Promise<string> {
  const id = randomUUID();
  await sql`insert into volumes (id, device_id, name, mount_point, capacity_bytes, version, updated_at)
    values (${id}, ${OWNER}, ${name}, '/m', 1, '000000000000001-000000-' || ${OWNER}, now())`.execute(db);
  return id;
}

async function eventsAfter(db: Db, after: number): Promise<{ seq: number; id: string; op: string; model: string }[]> {
  const r = await sql<{
    seq: string;
    id: string;
    op: string;
    model: string;
  }>`select seq::text as seq, id, op, model from sync_events where seq > ${after} order by seq`.execute(db);
  return r.rows.map((x) => ({ ...x, seq: Number(x.seq) }));
}

describe('change feed numbering on postgres', () => {
  let db: Db;
  useTestDb('postgres', (d) => (db = d));

  it('a transaction that commits later gets a later number, even if it wrote first', async () => {
    let release!: () => void;
    const held = new Promise<void>((r) => (release = r));
    let firstWrote!: () => void;
    let failed!: (e: unknown) => void;
    const wrote = new Promise<void>((resolve, reject) => ((firstWrote = resolve), (failed = reject)));
    let early = '';
    // T1 writes first and stays open
    const t1 = db.transaction().execute(async (tx) => {
      early = await insertVolume(tx as unknown as Db, 'written first, committed last');
      firstWrote();
      await held;
    });
    t1.catch(failed);
    await wrote;
    // T2 writes after it and commits first; a reader reads past it
    const late = await insertVolume(db, 'written second, committed first');
    const seen = await eventsAfter(db, 0);
    expect(seen.map((e) => e.id)).toEqual([late]);
    const readUpTo = seen[seen.length - 1].seq;
    release();
    await t1;
    // the reader goes on from where it stopped and still finds T1's change
    const next = await eventsAfter(db, readUpTo);
    expect(next.map((e) => e.id)).toEqual([early]);
    expect(next[0]).toMatchObject({ model: 'volumes', op: 'upsert' });
    // nothing waits outside a transaction
    const pending = await sql<{ n: number }>`select count(*)::int as n from sync_events_pending`.execute(db);
    expect(pending.rows[0].n).toBe(0);
  });

  it('a rolled-back transaction leaves no event and no pending row', async () => {
    const before = await eventsAfter(db, 0);
    await expect(
      db.transaction().execute(async (tx) => {
        await insertVolume(tx as unknown as Db, 'rolled back');
        throw new Error('abort');
      }),
    ).rejects.toThrow('abort');
    expect(await eventsAfter(db, 0)).toEqual(before);
    const pending = await sql<{ n: number }>`select count(*)::int as n from sync_events_pending`.execute(db);
    expect(pending.rows[0].n).toBe(0);
  });
});

describe.each(DB_MODES)('change feed numbering on %s', (mode) => {
  let db: Db;
  useTestDb(mode, (d) => (db = d));

  it('numbers every row of a statement, in order, once; deletes too', async () => {
    const ids = await db.transaction().execute(async (tx) => {
      const out: string[] = [];
      for (let i = 0; i < 3; i++) out.push(await insertVolume(tx as unknown as Db, `v${i}`));
      return out;
    });
    await sql`delete from volumes where id = ${ids[1]}`.execute(db);
    const events = await eventsAfter(db, 0);
    expect(events.map((e) => [e.id, e.op])).toEqual([
      [ids[0], 'upsert'],
      [ids[1], 'upsert'],
      [ids[2], 'upsert'],
      [ids[1], 'delete'],
    ]);
    const seqs = events.map((e) => e.seq);
    expect(new Set(seqs).size).toBe(seqs.length);
    expect([...seqs].sort((a, b) => a - b)).toEqual(seqs);
  });
});

describe('change feed across the upgrade to batches (migration change_feed_batches), on postgres', () => {
  it('keeps the numbers it gave, numbers on from there, and gives a statement of many rows consecutive numbers', async () => {
    const url = await createEmptyDatabase('feedup');
    const { db } = await openDatabase({ databaseUrl: url, dataDir: tempDataDir('feedup-') });
    try {
      const migrator = new Migrator({ db, provider: { getMigrations: async () => migrations } });
      const before = await migrator.migrateTo('20261208000000_apply_functions');
      expect(before.error).toBeUndefined();
      const old = [await insertVolume(db, 'a'), await insertVolume(db, 'b')];
      const oldEvents = await eventsAfter(db, 0);
      expect((await migrator.migrateToLatest()).error).toBeUndefined();
      expect(await eventsAfter(db, 0)).toEqual(oldEvents);
      // one statement, three rows
      const ids = [randomUUID(), randomUUID(), randomUUID()];
      await sql`insert into volumes (id, device_id, name, mount_point, capacity_bytes, version, updated_at)
        select id, ${OWNER}, 'n', '/m', 1, '000000000000002-000000-' || ${OWNER}, now()
        from unnest(${ids}::uuid[]) with ordinality as u(id, k) order by k`.execute(db);
      const events = await eventsAfter(db, 0);
      expect(events.map((e) => e.id)).toEqual([...old, ...ids]);
      expect(events.map((e) => e.seq)).toEqual([1, 2, 3, 4, 5].map((i) => oldEvents[0].seq + i - 1));
    } finally {
      await db.destroy();
      await dropTestDatabases();
    }
  });
});
