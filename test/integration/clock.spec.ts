import fc from 'fast-check';
import { sql } from 'kysely';
import type { Db } from '@lib/db';
import { ClockService } from '@lib/sync/clock/clock.service';
import { compareHlc, decodeHlc, encodeHlc, receive, tick } from '@lib/sync/clock/hlc';
import { ClockDriftError } from '@lib/sync/errors';
import { DB_MODES, useTestDb } from './storage-db';

/**
 * The device clock against a real database (docs/design.md, "Clocks"): strictly increasing stamps,
 * persisted and resumed after a restart, the receive rule, and the drift bound.
 */

const NODE = '00000000-0000-4000-8000-0000000000a1';
const REMOTE = '00000000-0000-4000-8000-0000000000b2';
const DRIFT = 5 * 60_000;
const T0 = 1_750_000_000_000;

class FakeWall {
  constructor(public ms: number) {}
  readonly now = (): number => this.ms;
}

describe.each(DB_MODES)('ClockService on %s', (mode) => {
  let db: Db;
  useTestDb(mode, (d) => (db = d));

  /** Forgets the persisted clock, as in a new database. */
  const resetPersisted = async () => {
    await sql`delete from sync_local_state where key = 'hlc'`.execute(db);
  };
  const persisted = async (): Promise<string> => {
    const row = await db
      .selectFrom('sync_local_state')
      .select('value')
      .where('key', '=', 'hlc')
      .executeTakeFirstOrThrow();
    return row.value;
  };
  const start = async (wall: FakeWall, node = NODE, drift = DRIFT): Promise<ClockService> => {
    const clock = new ClockService(node, drift, wall.now);
    await clock.load(db);
    return clock;
  };
  const stamp = (clock: ClockService): Promise<string> => db.transaction().execute((tx) => clock.stamp(tx));
  const observe = (clock: ClockService, remote: string): Promise<void> =>
    db.transaction().execute((tx) => clock.observe(tx, remote));

  beforeEach(resetPersisted);

  it('issues strictly increasing stamps, persisted with their transaction, at the wall clock', async () => {
    const wall = new FakeWall(T0);
    const clock = await start(wall);
    let last = '';
    for (let i = 0; i < 30; i++) {
      if (i % 3 === 0) wall.ms += 7; // some stamps share a millisecond, others do not
      const s = await stamp(clock);
      expect(s > last).toBe(true);
      expect(decodeHlc(s).node).toBe(NODE);
      expect(decodeHlc(s).physical).toBe(wall.ms);
      expect(await persisted()).toBe(s);
      expect(clock.current()).toBe(s);
      last = s;
    }
  });

  it('never goes back when the wall clock steps back', async () => {
    const wall = new FakeWall(T0 + 10_000);
    const clock = await start(wall);
    const a = await stamp(clock);
    wall.ms = T0; // NTP step back by 10 s
    const b = await stamp(clock);
    const c = await stamp(clock);
    expect(a < b && b < c).toBe(true);
    expect(decodeHlc(b)).toEqual({ physical: T0 + 10_000, logical: 1, node: NODE });
    expect(decodeHlc(c)).toEqual({ physical: T0 + 10_000, logical: 2, node: NODE });
    wall.ms = T0 + 20_000; // the wall clock catches up: the physical part follows it again
    expect(decodeHlc(await stamp(clock))).toEqual({ physical: T0 + 20_000, logical: 0, node: NODE });
  });

  it('resumes above the last persisted stamp after a restart, even with the wall clock far behind', async () => {
    const wall = new FakeWall(T0 + 3_600_000);
    const before = await start(wall);
    let last = '';
    for (let i = 0; i < 5; i++) last = await stamp(before);

    const restartedWall = new FakeWall(T0); // an hour behind, e.g. a dead RTC battery
    const after = await start(restartedWall);
    expect(after.current() >= last).toBe(true);
    const next = await stamp(after);
    expect(next > last).toBe(true);
    expect(decodeHlc(next).physical).toBe(T0 + 3_600_000);
    // a restart on a brand new wall clock value far in the past, twice
    const again = await start(new FakeWall(0));
    expect((await stamp(again)) > next).toBe(true);
  });

  it('a restart that loads while a previous instance keeps stamping still never repeats a stamp', async () => {
    const wall = new FakeWall(T0);
    const a = await start(wall);
    const b = await start(wall); // two services over one database (e.g. an overlapping restart)
    const seen = new Set<string>();
    let last = '';
    for (let i = 0; i < 20; i++) {
      const s = await stamp(i % 2 ? a : b);
      expect(s > last).toBe(true);
      expect(seen.has(s)).toBe(false);
      seen.add(s);
      last = s;
    }
  });

  it('observe() applies the receive rule: the next stamp is greater than the remote one', async () => {
    const wall = new FakeWall(T0);
    const clock = await start(wall);
    await stamp(clock);
    // a remote stamp ahead of us (within the drift bound) with a high counter
    const remote = encodeHlc({ physical: T0 + 60_000, logical: 41, node: REMOTE });
    await observe(clock, remote);
    const after = await stamp(clock);
    expect(after > remote).toBe(true);
    expect(decodeHlc(after)).toEqual({ physical: T0 + 60_000, logical: 43, node: NODE });
    expect(decodeHlc(await persisted())).toEqual(decodeHlc(after));
    // a remote stamp equal in (physical, logical) but with a greater node id is passed too
    const tie = encodeHlc({ ...decodeHlc(after), node: 'ffffffff-ffff-4fff-bfff-ffffffffffff' });
    await observe(clock, tie);
    expect((await stamp(clock)) > tie).toBe(true);
    // a remote stamp in the past does not pull the clock back
    const old = encodeHlc({ physical: 1, logical: 0, node: REMOTE });
    const beforeOld = clock.current();
    await observe(clock, old);
    expect((await stamp(clock)) > beforeOld).toBe(true);
  });

  it('the observed remote stamp survives a restart', async () => {
    const wall = new FakeWall(T0);
    const clock = await start(wall);
    const remote = encodeHlc({ physical: T0 + 120_000, logical: 7, node: REMOTE });
    await observe(clock, remote);
    const restarted = await start(new FakeWall(T0));
    expect((await stamp(restarted)) > remote).toBe(true);
  });

  it('refuses a remote stamp beyond the drift bound and does not move the clock, in memory or on disk', async () => {
    const wall = new FakeWall(T0);
    const clock = await start(wall, NODE, 1000);
    const s = await stamp(clock);
    const current = clock.current();

    const far = encodeHlc({ physical: T0 + 1001, logical: 0, node: REMOTE });
    await expect(observe(clock, far)).rejects.toBeInstanceOf(ClockDriftError);
    const err = await observe(clock, far).catch((e: unknown) => e);
    expect(err).toMatchObject({ stamp: far, aheadMs: 1001 });
    expect(() => clock.checkDrift(far)).toThrow(ClockDriftError);
    expect(clock.current()).toBe(current);
    expect(await persisted()).toBe(s);
    const next = await stamp(clock);
    expect(next < far).toBe(true);
    expect(decodeHlc(next)).toEqual({ physical: T0, logical: 1, node: NODE });

    // exactly at the bound is accepted; the bound is relative to the wall clock, not to the HLC
    const atBound = encodeHlc({ physical: T0 + 1000, logical: 0, node: REMOTE });
    expect(() => clock.checkDrift(atBound)).not.toThrow();
    await observe(clock, atBound);
    expect((await stamp(clock)) > atBound).toBe(true);
    // the wall clock moving forward makes the previously held stamp acceptable
    wall.ms = T0 + 10;
    expect(() => clock.checkDrift(far)).not.toThrow();
  });

  it('a drifted stamp refused inside a write transaction leaves that transaction usable and the clock unmoved', async () => {
    const wall = new FakeWall(T0);
    const clock = await start(wall, NODE, 1000);
    const far = encodeHlc({ physical: T0 + 999_999, logical: 0, node: REMOTE });
    const [held, s] = await db.transaction().execute(async (tx) => {
      const e = await clock.observe(tx, far).catch((x: unknown) => x);
      return [e, await clock.stamp(tx)] as const;
    });
    expect(held).toBeInstanceOf(ClockDriftError);
    expect(s < far).toBe(true);
    expect(await persisted()).toBe(s);
  });

  it('a stamp rolled back with its transaction never makes a later stamp smaller', async () => {
    const wall = new FakeWall(T0 + 5_000);
    const clock = await start(wall);
    const committed = await stamp(clock);
    let rolledBack = '';
    await expect(
      db.transaction().execute(async (tx) => {
        rolledBack = await clock.stamp(tx);
        rolledBack = await clock.stamp(tx);
        throw new Error('abort');
      }),
    ).rejects.toThrow('abort');
    expect(rolledBack > committed).toBe(true);
    expect(await persisted()).toBe(committed); // the transaction's stamps are gone from the database…
    wall.ms = T0; // …and the wall clock steps back
    const next = await stamp(clock);
    expect(next > rolledBack).toBe(true); // …yet the next stamp is above the one that was rolled back
    expect(await persisted()).toBe(next);

    // an observe rolled back with its transaction does not move the clock back either
    const remote = encodeHlc({ physical: T0 + 60_000, logical: 0, node: REMOTE });
    await expect(
      db.transaction().execute(async (tx) => {
        await clock.observe(tx, remote);
        throw new Error('abort');
      }),
    ).rejects.toThrow('abort');
    expect((await stamp(clock)) > remote).toBe(true);
  });

  it('concurrent stamping transactions get distinct stamps and the highest one is persisted', async () => {
    const wall = new FakeWall(T0);
    const clock = await start(wall);
    const stamps = await Promise.all(Array.from({ length: 20 }, () => stamp(clock)));
    expect(new Set(stamps).size).toBe(stamps.length);
    expect(await persisted()).toBe([...stamps].sort().at(-1));
  });

  it('property: stamps strictly increase over any sequence of wall times, remote stamps and restarts', async () => {
    type Op =
      | { op: 'stamp'; wall: number }
      | { op: 'observe'; wall: number; ahead: number; logical: number }
      | { op: 'restart'; wall: number };
    const arbWall = fc.oneof(fc.integer({ min: T0 - 10_000, max: T0 + 10_000 }), fc.integer({ min: 0, max: T0 * 2 }));
    const arbOp: fc.Arbitrary<Op> = fc.oneof(
      { weight: 4, arbitrary: fc.record({ op: fc.constant('stamp' as const), wall: arbWall }) },
      {
        weight: 2,
        arbitrary: fc.record({
          op: fc.constant('observe' as const),
          wall: arbWall,
          ahead: fc.oneof(
            fc.integer({ min: -5_000, max: 1_000 }),
            fc.integer({ min: 999, max: 1_001 }),
            fc.integer({ min: 1_000, max: 1_000_000 }),
          ),
          logical: fc.integer({ min: 0, max: 999_999 }),
        }),
      },
      { weight: 1, arbitrary: fc.record({ op: fc.constant('restart' as const), wall: arbWall }) },
    );
    await fc.assert(
      fc.asyncProperty(fc.array(arbOp, { minLength: 1, maxLength: 25 }), async (ops) => {
        await resetPersisted();
        const wall = new FakeWall(T0);
        let clock = await start(wall, NODE, 1000);
        let floor = ''; // every later stamp must be above this: the last stamp and every accepted remote stamp
        for (const o of ops) {
          wall.ms = o.wall;
          if (o.op === 'stamp') {
            const s = await stamp(clock);
            expect(s > floor).toBe(true);
            expect(decodeHlc(s).physical).toBeGreaterThanOrEqual(o.wall);
            floor = s;
          } else if (o.op === 'observe') {
            const remote = encodeHlc({ physical: Math.max(0, o.wall + o.ahead), logical: o.logical, node: REMOTE });
            const before = clock.current();
            const held = o.wall + o.ahead - o.wall > 1000;
            if (held) {
              await expect(observe(clock, remote)).rejects.toBeInstanceOf(ClockDriftError);
              expect(clock.current()).toBe(before);
            } else {
              await observe(clock, remote);
              if (remote > floor) floor = remote;
            }
          } else {
            clock = await start(wall, NODE, 1000);
          }
        }
        const last = await stamp(clock);
        expect(last > floor).toBe(true);
        expect(await persisted()).toBe(last);
      }),
      { numRuns: mode === 'pglite' ? 40 : 60 },
    );
  });
  it('property: the SQL step (sync_clock_advance) is exactly hlc.ts tick and receive', async () => {
    const arbStamp = fc.record({
      physical: fc.oneof(fc.integer({ min: T0 - 5, max: T0 + 5 }), fc.integer({ min: 0, max: T0 * 2 })),
      logical: fc.oneof(fc.integer({ min: 0, max: 5 }), fc.integer({ min: 999_990, max: 999_999 })),
    });
    await fc.assert(
      fc.asyncProperty(
        arbStamp,
        fc.option(arbStamp, { nil: null }),
        fc.option(arbStamp, { nil: null }),
        fc.integer({ min: T0 - 5, max: T0 + 5 }),
        async (held, floor, remote, wall) => {
          const heldText = encodeHlc({ ...held, node: REMOTE });
          await sql`insert into sync_local_state (key, value) values ('hlc', ${heldText})
            on conflict (key) do update set value = excluded.value`.execute(db);
          const floorText = floor && encodeHlc({ ...floor, node: NODE });
          const remoteText = remote && encodeHlc({ ...remote, node: REMOTE });
          const got = (
            await sql<{
              s: string;
            }>`select sync_clock_advance(${wall}::bigint, ${NODE}::text, ${floorText}::text, ${remoteText}::text) as s`.execute(
              db,
            )
          ).rows[0].s;
          const base = floor && compareHlc({ ...floor, node: '' }, { ...held, node: '' }) > 0 ? floor : held;
          const last = { ...base, node: NODE };
          const want = remote ? receive(last, { ...remote, node: REMOTE }, wall, NODE) : tick(last, wall, NODE);
          expect(got).toBe(encodeHlc(want));
          expect(await persisted()).toBe(got);
        },
      ),
      { numRuns: mode === 'pglite' ? 60 : 150 },
    );
  });
});
