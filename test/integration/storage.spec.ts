import { randomUUID } from 'node:crypto';
import fc from 'fast-check';
import { KyselyPlugin, sql } from 'kysely';
import type { Db } from '@lib/db';
import { ClockService } from '@lib/sync/clock/clock.service';
import { decodeHlc, encodeHlc } from '@lib/sync/clock/hlc';
import { NotFoundError, NotOwnerError } from '@lib/sync/errors';
import {
  ALBUMS,
  ENTRIES,
  LOCATIONS,
  MODELS,
  OWNED_MODELS,
  OwnedModel,
  TAG_ENTRIES,
  TAGS,
  USER_METADATA,
  VOLUMES,
} from '@lib/sync/models/registry';
import { encodeCursor, TOMBSTONE_KIND } from '@lib/sync/owned/cursor';
import { OwnedWriter } from '@lib/sync/owned/owned-writer';
import { OwnedChange, OwnedRepository, OwnedRow, Tombstone } from '@lib/sync/owned/owned.repository';
import { ALL_ACKNOWLEDGED, DevicesRepository, IdentityError } from '@lib/sync/store/devices.repository';
import { SharedRepository } from '@lib/sync/shared/shared.repository';
import { SharedWriter } from '@lib/sync/shared/shared-writer';
import { ChangeKind, ChangeSignal } from '@lib/sync/sync.signals';
import { computeDigest, ModelDigest } from '@lib/sync/models/digest';
import { closeTestDb, DB_MODES, DbMode, openTestDb } from './storage-db';

/**
 * The storage layer of the sync engine against real Postgres and embedded PGlite: the owner's write
 * path and change stream, the remote apply rules of device-owned state, the shared write path and
 * its change log, and the devices table.
 */

const DRIFT = 5 * 60_000;
const MODIFIED = '2025-01-02T03:04:05.678Z';
const UPDATED = '2025-06-01T00:00:00.000Z';

/** A version of a (remote) owner: an HLC text with that owner as node. */
const v = (owner: string, physical: number, logical = 0) =>
  encodeHlc({ physical: 1_700_000_000_000 + physical, logical, node: owner });

const volume = (over: Record<string, unknown> = {}) => ({
  id: randomUUID(),
  name: 'disk',
  mount_point: '/mnt/disk',
  capacity_bytes: 4_000_000_000_000,
  free_bytes: 1_000_000_000_000,
  ...over,
});
const location = (volumeId: string | null, over: Record<string, unknown> = {}) => ({
  id: randomUUID(),
  volume_id: volumeId,
  name: 'photos',
  path: '/mnt/disk/photos',
  ...over,
});
const entry = (locationId: string, i: number, over: Record<string, unknown> = {}) => ({
  id: randomUUID(),
  location_id: locationId,
  name: `f${i}.jpg`,
  path: `/mnt/disk/photos/f${i}.jpg`,
  kind: 'file',
  size_bytes: 1000 + i,
  modified_at: MODIFIED,
  ...over,
});
/** A row in wire form as a peer receives it from `owner`. */
const wire = (row: Record<string, unknown>, owner: string, version: string): OwnedRow =>
  ({ ...row, device_id: owner, version, updated_at: UPDATED }) as unknown as OwnedRow;

/** Digests of one fixed data set, per database mode (compared across modes at the end). */
const digests: Partial<Record<DbMode, Record<string, ModelDigest>>> = {};

describe.each(DB_MODES)('storage on %s', (mode) => {
  let db: Db;
  const repo = new OwnedRepository();

  beforeAll(async () => {
    db = await openTestDb(mode);
  });
  afterAll(async () => {
    await closeTestDb(db);
  });

  const persistedClock = async () =>
    (await db.selectFrom('sync_local_state').select('value').where('key', '=', 'hlc').executeTakeFirstOrThrow()).value;

  /** A device with its own clock and owned write path over the shared test database. */
  async function ownerDevice(id = randomUUID()) {
    const clock = new ClockService(id, DRIFT);
    await clock.load(db);
    const signal = new ChangeSignal();
    const notified: ChangeKind[] = [];
    signal.on('owned', () => notified.push('owned'));
    signal.on('shared', () => notified.push('shared'));
    return { id, clock, notified, writer: new OwnedWriter(db, clock, repo, signal, id) };
  }

  const rowsOf = async (table: 'volumes' | 'locations' | 'entries', owner: string) =>
    sql<Record<string, any>>`select * from ${sql.table(table)} where device_id = ${owner} order by id`
      .execute(db)
      .then((r) => r.rows);
  const tombstonesOf = (owner: string) =>
    db.selectFrom('owned_tombstones').selectAll().where('device_id', '=', owner).orderBy('id').execute();
  const find = (model: OwnedModel, id: string) => repo.find(db, model, id);

  /** Every change of an owner, read page by page from the start. */
  async function pageAll(owner: string, limit: number, from: string | null = null): Promise<OwnedChange[]> {
    const out: OwnedChange[] = [];
    let cursor = from;
    for (let pages = 0; ; pages++) {
      expect(pages).toBeLessThan(10_000);
      const page = await repo.changesAfter(db, owner, cursor, limit);
      expect(page.length).toBeLessThanOrEqual(limit);
      if (page.length === 0) return out;
      out.push(...page);
      cursor = page[page.length - 1].cursor;
    }
  }

  /** What an owner's change stream must hold, computed straight from the tables. */
  async function expectedCursors(owner: string): Promise<string[]> {
    const out: string[] = [];
    for (const model of OWNED_MODELS) {
      for (const r of await rowsOf(model.table, owner))
        out.push(encodeCursor({ version: r.version, kind: model.order, id: r.id }));
    }
    for (const t of await tombstonesOf(owner))
      out.push(encodeCursor({ version: t.version, kind: TOMBSTONE_KIND, id: t.id }));
    return out.sort();
  }

  describe('owned writes (the owner)', () => {
    it('stamps version and updated_at (the stamp wall time) on every row a write touches, one version per transaction', async () => {
      const d = await ownerDevice();
      const vol = volume();
      const loc = location(vol.id);
      const ents = [0, 1, 2].map((i) => entry(loc.id, i));
      const first = await d.writer.transact(async (w) => {
        const stamped = [
          ...(await w.upsert(VOLUMES, [vol])),
          ...(await w.upsert(LOCATIONS, [loc])),
          ...(await w.upsert(ENTRIES, ents)),
        ];
        for (const r of stamped)
          expect(r).toMatchObject({ device_id: d.id, version: w.version, updated_at: w.updatedAt });
        return w.version;
      });
      expect(decodeHlc(first).node).toBe(d.id);
      expect(await persistedClock()).toBe(first);
      expect(d.notified).toEqual(['owned']);
      const wallTime = new Date(decodeHlc(first).physical).toISOString();
      for (const table of ['volumes', 'locations', 'entries'] as const) {
        const rows = await rowsOf(table, d.id);
        expect(rows.length).toBe(table === 'entries' ? 3 : 1);
        for (const r of rows) {
          expect(r.version).toBe(first);
          expect(new Date(r.updated_at).toISOString()).toBe(wallTime);
        }
      }

      // a second transaction touching one entry: a new, greater version on that row only
      const second = await d.writer.transact(async (w) => {
        await w.upsert(ENTRIES, [{ ...ents[0], size_bytes: 99 }]);
        return w.version;
      });
      expect(second > first).toBe(true);
      const after = await rowsOf('entries', d.id);
      for (const r of after) expect(r.version).toBe(r.id === ents[0].id ? second : first);
      expect(after.find((r) => r.id === ents[0].id)!.size_bytes).toBe(99);
      expect(new Date(after.find((r) => r.id === ents[0].id)!.updated_at).toISOString()).toBe(
        new Date(decodeHlc(second).physical).toISOString(),
      );
      expect((await rowsOf('volumes', d.id))[0].version).toBe(first);
    });

    it('reads rows back in wire form with the same types on both databases', async () => {
      const d = await ownerDevice();
      const vol = volume({ free_bytes: null });
      const loc = location(vol.id);
      const e = entry(loc.id, 7);
      const version = await d.writer.transact(async (w) => {
        await w.upsert(VOLUMES, [vol]);
        await w.upsert(LOCATIONS, [loc]);
        await w.upsert(ENTRIES, [e]);
        return w.version;
      });
      const updatedAt = new Date(decodeHlc(version).physical).toISOString();
      expect(await find(VOLUMES, vol.id)).toEqual({ ...vol, device_id: d.id, version, updated_at: updatedAt });
      expect(await find(LOCATIONS, loc.id)).toEqual({ ...loc, device_id: d.id, version, updated_at: updatedAt });
      expect(await find(ENTRIES, e.id)).toEqual({ ...e, device_id: d.id, version, updated_at: updatedAt });
      const [changeOfVolume] = await repo.changesAfter(db, d.id, null, 1);
      expect(changeOfVolume).toEqual({
        type: 'row',
        model: 'volumes',
        row: { ...vol, device_id: d.id, version, updated_at: updatedAt },
        cursor: encodeCursor({ version, kind: 0, id: vol.id }),
      });
      expect(typeof (changeOfVolume as { row: OwnedRow }).row.capacity_bytes).toBe('number');
      // every synced column is present and valid by the model's own wire schema
      for (const ch of await pageAll(d.id, 10)) {
        if (ch.type === 'row')
          expect(OWNED_MODELS.find((m) => m.name === ch.model)!.wire.safeParse(ch.row).success).toBe(true);
      }
    });

    it('a write that throws leaves no row, no persisted stamp and no signal', async () => {
      const d = await ownerDevice();
      const before = await persistedClock();
      const vol = volume();
      await expect(
        d.writer.transact(async (w) => {
          await w.upsert(VOLUMES, [vol]);
          throw new Error('crash');
        }),
      ).rejects.toThrow('crash');
      expect(await find(VOLUMES, vol.id)).toBeNull();
      expect(await persistedClock()).toBe(before);
      expect(d.notified).toEqual([]);
    });

    it('only the owner changes its rows: another device row is refused (403) or left alone', async () => {
      const d = await ownerDevice();
      const other = randomUUID();
      const theirs = location(null);
      await repo.upsert(db, LOCATIONS, [wire(theirs, other, v(other, 1))], true);
      await expect(d.writer.transact((w) => w.requireOwn(LOCATIONS, theirs.id))).rejects.toBeInstanceOf(NotOwnerError);
      await expect(d.writer.transact((w) => w.delete(LOCATIONS, theirs.id))).rejects.toBeInstanceOf(NotOwnerError);
      await expect(d.writer.transact((w) => w.delete(LOCATIONS, randomUUID()))).rejects.toBeInstanceOf(NotFoundError);
      // even when a caller skips the check, the owner's upsert does not take another device's row
      await d.writer.transact((w) => w.upsert(LOCATIONS, [{ ...theirs, name: 'stolen' }]));
      expect(await find(LOCATIONS, theirs.id)).toMatchObject({
        device_id: other,
        name: 'photos',
        version: v(other, 1),
      });
      expect(await repo.isTombstoned(db, 'locations', theirs.id)).toBe(false);
    });

    it('a delete leaves a tombstone (id, owner, version) and removes the row', async () => {
      const d = await ownerDevice();
      const vol = volume();
      await d.writer.transact((w) => w.upsert(VOLUMES, [vol]));
      const version = await d.writer.transact(async (w) => {
        await w.delete(VOLUMES, vol.id);
        expect(await w.isDeleted(VOLUMES, vol.id)).toBe(true);
        return w.version;
      });
      expect(await find(VOLUMES, vol.id)).toBeNull();
      expect(await tombstonesOf(d.id)).toEqual([{ model: 'volumes', id: vol.id, device_id: d.id, version }]);
      expect(await repo.isTombstoned(db, 'volumes', vol.id)).toBe(true);
      expect(d.notified).toEqual(['owned', 'owned']);
    });

    it('deleting a location removes its entries, with a single tombstone row', async () => {
      const d = await ownerDevice();
      const doomed = location(null);
      const kept = location(null, { path: '/kept' });
      const doomedEntries = Array.from({ length: 25 }, (_, i) => entry(doomed.id, i));
      const keptEntries = Array.from({ length: 3 }, (_, i) => entry(kept.id, i));
      await d.writer.transact(async (w) => {
        await w.upsert(LOCATIONS, [doomed, kept]);
        await w.upsert(ENTRIES, [...doomedEntries, ...keptEntries]);
      });
      const [beforeDelete] = (await pageAll(d.id, 1000)).slice(-1);
      const version = await d.writer.transact(async (w) => {
        await w.delete(LOCATIONS, doomed.id);
        return w.version;
      });
      expect(await find(LOCATIONS, doomed.id)).toBeNull();
      expect((await rowsOf('entries', d.id)).map((r) => r.location_id)).toEqual(keptEntries.map(() => kept.id));
      expect(await tombstonesOf(d.id)).toEqual([{ model: 'locations', id: doomed.id, device_id: d.id, version }]);
      // what a peer that had seen everything before gets: exactly the one tombstone
      const news = await repo.changesAfter(db, d.id, beforeDelete.cursor, 100);
      expect(news).toEqual([
        {
          type: 'tombstone',
          tombstone: { model: 'locations', id: doomed.id, device_id: d.id, version },
          cursor: encodeCursor({ version, kind: TOMBSTONE_KIND, id: doomed.id }),
        },
      ]);
    });

    it('deleting a volume sets its locations volume_id to null with the delete version', async () => {
      const d = await ownerDevice();
      const other = randomUUID();
      const vol = volume();
      const otherVol = volume();
      const [l1, l2] = [location(vol.id), location(vol.id, { path: '/b' })];
      const l3 = location(otherVol.id);
      const first = await d.writer.transact(async (w) => {
        await w.upsert(VOLUMES, [vol, otherVol]);
        await w.upsert(LOCATIONS, [l1, l2, l3]);
        return w.version;
      });
      // another device's location that (wrongly) points at our volume: only its owner may change it
      const foreign = location(vol.id);
      await repo.upsert(db, LOCATIONS, [wire(foreign, other, v(other, 1))], true);
      const [beforeDelete] = (await pageAll(d.id, 1000)).slice(-1);

      const version = await d.writer.transact(async (w) => {
        await w.delete(VOLUMES, vol.id);
        return w.version;
      });
      const updatedAt = new Date(decodeHlc(version).physical).toISOString();
      expect(await find(LOCATIONS, l1.id)).toMatchObject({ volume_id: null, version, updated_at: updatedAt });
      expect(await find(LOCATIONS, l2.id)).toMatchObject({ volume_id: null, version, updated_at: updatedAt });
      expect(await find(LOCATIONS, l3.id)).toMatchObject({ volume_id: otherVol.id, version: first });
      expect(await find(LOCATIONS, foreign.id)).toMatchObject({
        volume_id: vol.id,
        device_id: other,
        version: v(other, 1),
      });
      expect(await find(VOLUMES, vol.id)).toBeNull();
      // peers learn it as the two new location versions, then the volume's tombstone, in that order
      const news = await repo.changesAfter(db, d.id, beforeDelete.cursor, 100);
      expect(news.map((c) => (c.type === 'row' ? `${c.model}:${c.row.id}` : `tombstone:${c.tombstone.id}`))).toEqual([
        ...[l1.id, l2.id].sort().map((id) => `locations:${id}`),
        `tombstone:${vol.id}`,
      ]);
    });
  });

  describe('the owner change stream: changesAfter', () => {
    let owner: string;
    let expected: string[];

    beforeAll(async () => {
      const d = await ownerDevice();
      owner = d.id;
      const w = d.writer;
      const v1 = volume();
      const l1 = location(v1.id);
      const l2 = location(null);
      const e1 = Array.from({ length: 6 }, (_, i) => entry(l1.id, i));
      const e2 = Array.from({ length: 4 }, (_, i) => entry(l2.id, i));
      await w.transact(async (t) => {
        await t.upsert(VOLUMES, [v1]);
        await t.upsert(LOCATIONS, [l1]);
        await t.upsert(ENTRIES, e1);
      });
      await w.transact(async (t) => {
        await t.upsert(LOCATIONS, [l2]);
        await t.upsert(ENTRIES, e2);
      });
      await w.transact((t) => t.upsert(ENTRIES, [{ ...e1[0], size_bytes: 1 }])); // moves to a later version
      await w.transact((t) => t.delete(ENTRIES, e1[1].id));
      await w.transact((t) => t.delete(LOCATIONS, l2.id));
      const v2 = volume();
      await w.transact((t) => t.upsert(VOLUMES, [v2]));
      await w.transact(async (t) => {
        await t.upsert(LOCATIONS, [location(v2.id)]);
        await t.delete(VOLUMES, v2.id); // a tombstone and a row change at the same version
      });
      await w.transact((t) => t.upsert(ENTRIES, [entry(l1.id, 100), entry(l1.id, 101)]));

      // another owner's rows and tombstones in the same tables must never appear
      const stranger = randomUUID();
      const sl = location(null);
      await repo.upsert(db, LOCATIONS, [wire(sl, stranger, v(stranger, 5))], true);
      await repo.upsert(db, ENTRIES, [wire(entry(sl.id, 1), stranger, v(stranger, 5))], true);
      await repo.applyTombstones(db, [
        { model: 'entries', id: randomUUID(), device_id: stranger, version: v(stranger, 6) },
      ]);

      expected = await expectedCursors(owner);
      expect(expected.length).toBe(1 + 1 + 5 + 2 + 1 + 3); // v1, l1, e1 (6 - 1 deleted), 2 new entries, l3, 3 tombstones
    });

    it.each([1, 2, 3, 5, 7, 1000])(
      'pages in (version, kind, id) order, each change exactly once (limit %i)',
      async (limit) => {
        const all = await pageAll(owner, limit);
        expect(all.map((c) => c.cursor)).toEqual(expected);
        for (const c of all) {
          if (c.type === 'row') {
            expect(c.row.device_id).toBe(owner);
            expect(c.cursor).toBe(
              encodeCursor({
                version: c.row.version,
                kind: OWNED_MODELS.find((m) => m.name === c.model)!.order,
                id: c.row.id,
              }),
            );
            expect(c.row).toEqual(
              await find(
                OWNED_MODELS.find((m) => m.name === c.model)!,
                c.row.id,
              ),
            );
          } else {
            expect(c.tombstone.device_id).toBe(owner);
            expect(c.cursor).toBe(
              encodeCursor({ version: c.tombstone.version, kind: TOMBSTONE_KIND, id: c.tombstone.id }),
            );
          }
        }
      },
    );

    it('property: from any position, a page is exactly the next `limit` changes', async () => {
      await fc.assert(
        fc.asyncProperty(
          fc.integer({ min: -1, max: expected.length - 1 }),
          fc.integer({ min: 1, max: expected.length + 2 }),
          async (at, limit) => {
            const page = await repo.changesAfter(db, owner, at < 0 ? null : expected[at], limit);
            expect(page.map((c) => c.cursor)).toEqual(expected.slice(at + 1, at + 1 + limit));
          },
        ),
        { numRuns: 40 },
      );
    });

    it('an owner with nothing yields nothing; a cursor at the end yields only what comes later', async () => {
      expect(await repo.changesAfter(db, randomUUID(), null, 10)).toEqual([]);
      const last = expected[expected.length - 1];
      expect(await repo.changesAfter(db, owner, last, 10)).toEqual([]);
    });

    it('splits a 2,500-row single-transaction batch over pages without loss or duplicates', async () => {
      const d = await ownerDevice();
      const loc = location(null);
      const ents = Array.from({ length: 2500 }, (_, i) => entry(loc.id, i));
      const version = await d.writer.transact(async (w) => {
        await w.upsert(LOCATIONS, [loc]);
        await w.upsert(ENTRIES, ents);
        return w.version;
      });
      const pages: OwnedChange[][] = [];
      let cursor: string | null = null;
      for (;;) {
        const page: OwnedChange[] = await repo.changesAfter(db, d.id, cursor, 1000);
        if (page.length === 0) break;
        pages.push(page);
        cursor = page[page.length - 1].cursor;
      }
      expect(pages.map((p) => p.length)).toEqual([1000, 1000, 501]);
      const all = pages.flat();
      expect(all.every((c) => c.type === 'row' && c.row.version === version)).toBe(true);
      expect(all[0]).toMatchObject({ type: 'row', model: 'locations' });
      const entryIds = all.slice(1).map((c) => (c as { row: OwnedRow }).row.id);
      expect(entryIds).toEqual(ents.map((e) => e.id).sort());
      expect(all.map((c) => c.cursor)).toEqual(await expectedCursors(d.id));
    });

    it('a write that commits while a page is being read is neither skipped nor duplicated', async () => {
      // The publisher and the catch-up responder read the stream while the owner keeps writing. A
      // page is several queries (one per model, and tombstones): a commit between them must not
      // make the page jump past a change it did not see.
      const d = await ownerDevice();
      const loc = location(null);
      await d.writer.transact(async (w) => {
        await w.upsert(VOLUMES, [volume()]);
        await w.upsert(LOCATIONS, [loc]);
        await w.upsert(ENTRIES, [entry(loc.id, 0), entry(loc.id, 1)]);
      });
      const concurrentVolume = volume();
      const concurrentEntry = entry(loc.id, 2);
      let write: Promise<unknown> | null = null;
      const writeDuringRead: KyselyPlugin = {
        transformQuery: (args) => args.node,
        transformResult: async (args) => {
          if (!write) {
            // right after the first query of the page (volumes) returned
            write = d.writer.transact(async (w) => {
              await w.upsert(VOLUMES, [concurrentVolume]);
              await w.upsert(ENTRIES, [concurrentEntry]);
            });
            // Postgres: let it commit now, on another connection. PGlite has one session: the
            // write queues for it, behind the read or between its queries.
            if (mode === 'postgres') await write;
          }
          return args.result;
        },
      };
      const reader = db.withPlugin(writeDuringRead);
      const first = await repo.changesAfter(reader, d.id, null, 1000);
      await write;
      const rest = await pageAll(d.id, 1000, first[first.length - 1].cursor);
      const stream = [...first, ...rest].map((c) => c.cursor);
      expect(stream).toEqual(await expectedCursors(d.id));
      const ids = [...first, ...rest].map((c) => (c as { row: OwnedRow }).row.id);
      expect(ids).toEqual(expect.arrayContaining([concurrentVolume.id, concurrentEntry.id]));
    });

    it('a later change of a row already paged past comes after the cursor', async () => {
      const d = await ownerDevice();
      const loc = location(null);
      const ents = Array.from({ length: 5 }, (_, i) => entry(loc.id, i));
      await d.writer.transact(async (w) => {
        await w.upsert(LOCATIONS, [loc]);
        await w.upsert(ENTRIES, ents);
      });
      const seen = await pageAll(d.id, 2);
      const watermark = seen[seen.length - 1].cursor;
      const version = await d.writer.transact(async (w) => {
        await w.upsert(ENTRIES, [{ ...ents[0], name: 'renamed.jpg' }]);
        return w.version;
      });
      const news = await repo.changesAfter(db, d.id, watermark, 10);
      expect(news).toHaveLength(1);
      expect(news[0]).toMatchObject({
        type: 'row',
        model: 'entries',
        row: { id: ents[0].id, name: 'renamed.jpg', version },
      });
    });
  });

  describe('remote state apply: upsert(onlyNewer)', () => {
    const owner = randomUUID();

    it('inserts a new row and applies only strictly newer versions (older, equal and redelivered are no-ops)', async () => {
      const loc = location(null);
      expect(await repo.upsert(db, LOCATIONS, [wire(loc, owner, v(owner, 5))], true)).toBe(1);
      expect(await find(LOCATIONS, loc.id)).toEqual(wire(loc, owner, v(owner, 5)));
      expect(await repo.upsert(db, LOCATIONS, [wire(loc, owner, v(owner, 5))], true)).toBe(0); // redelivery
      expect(await repo.upsert(db, LOCATIONS, [wire({ ...loc, name: 'older' }, owner, v(owner, 3))], true)).toBe(0);
      expect(await repo.upsert(db, LOCATIONS, [wire({ ...loc, name: 'same version' }, owner, v(owner, 5))], true)).toBe(
        0,
      );
      expect(
        await repo.upsert(
          db,
          LOCATIONS,
          [wire({ ...loc, name: 'same ms, lower counter' }, owner, v(owner, 4, 9))],
          true,
        ),
      ).toBe(0);
      expect(await find(LOCATIONS, loc.id)).toMatchObject({ name: 'photos', version: v(owner, 5) });
      expect(await repo.upsert(db, LOCATIONS, [wire({ ...loc, name: 'newer' }, owner, v(owner, 5, 1))], true)).toBe(1);
      expect(await find(LOCATIONS, loc.id)).toMatchObject({ name: 'newer', version: v(owner, 5, 1) });
    });

    it('ends on the newer version whatever the arrival order', async () => {
      const a = location(null);
      const b = location(null);
      await repo.upsert(db, LOCATIONS, [wire({ ...a, name: 'v9' }, owner, v(owner, 9))], true);
      await repo.upsert(db, LOCATIONS, [wire({ ...a, name: 'v8' }, owner, v(owner, 8))], true);
      await repo.upsert(db, LOCATIONS, [wire({ ...b, name: 'v8' }, owner, v(owner, 8))], true);
      await repo.upsert(db, LOCATIONS, [wire({ ...b, name: 'v9' }, owner, v(owner, 9))], true);
      expect(await find(LOCATIONS, a.id)).toMatchObject({ name: 'v9', version: v(owner, 9) });
      expect(await find(LOCATIONS, b.id)).toMatchObject({ name: 'v9', version: v(owner, 9) });
    });

    it('property: any delivery order with duplicates ends on the greatest version', async () => {
      await fc.assert(
        fc.asyncProperty(
          fc.uniqueArray(fc.integer({ min: 1, max: 60 }), { minLength: 1, maxLength: 8 }),
          fc.array(fc.nat(), { maxLength: 6 }),
          fc.boolean(),
          async (versions, dups, batched) => {
            const base = entry(randomUUID(), 0);
            const states = versions.map((p) => wire({ ...base, size_bytes: p, name: `v${p}` }, owner, v(owner, p)));
            const deliveries = [...states];
            for (const i of dups) deliveries.splice(i % (deliveries.length + 1), 0, states[i % states.length]);
            if (batched) {
              // one message per row here; a batch with two states of one row is not what the owner sends
              for (const s of deliveries) await repo.upsert(db, ENTRIES, [s], true);
            } else {
              await db.transaction().execute(async (tx) => {
                for (const s of deliveries) await repo.upsert(tx, ENTRIES, [s], true);
              });
            }
            const top = Math.max(...versions);
            expect(await find(ENTRIES, base.id)).toEqual(states[versions.indexOf(top)]);
          },
        ),
        { numRuns: 25 },
      );
    });

    it('applies each row of a batch on its own merits and counts what it wrote', async () => {
      const [a, b, c] = [location(null), location(null), location(null)];
      await repo.upsert(db, LOCATIONS, [wire(a, owner, v(owner, 5)), wire(b, owner, v(owner, 5))], true);
      const n = await repo.upsert(
        db,
        LOCATIONS,
        [
          wire({ ...a, name: 'older' }, owner, v(owner, 4)),
          wire({ ...b, name: 'newer' }, owner, v(owner, 6)),
          wire(c, owner, v(owner, 1)),
        ],
        true,
      );
      expect(n).toBe(2);
      expect((await find(LOCATIONS, a.id))!.name).toBe('photos');
      expect((await find(LOCATIONS, b.id))!.name).toBe('newer');
      expect(await find(LOCATIONS, c.id)).not.toBeNull();
    });

    it('ignores a row whose id is tombstoned with a version at or above its own', async () => {
      const loc = location(null);
      await repo.upsert(db, LOCATIONS, [wire(loc, owner, v(owner, 5))], true);
      await repo.applyTombstones(db, [{ model: 'locations', id: loc.id, device_id: owner, version: v(owner, 10) }]);
      expect(await find(LOCATIONS, loc.id)).toBeNull();
      // the late redelivery of old states must not resurrect it
      expect(await repo.upsert(db, LOCATIONS, [wire(loc, owner, v(owner, 5))], true)).toBe(0);
      expect(await repo.upsert(db, LOCATIONS, [wire(loc, owner, v(owner, 9))], true)).toBe(0);
      expect(await repo.upsert(db, LOCATIONS, [wire(loc, owner, v(owner, 10))], true)).toBe(0);
      expect(await find(LOCATIONS, loc.id)).toBeNull();
      // a tombstone that arrives before the row it deletes (reordering) also keeps it out
      const early = volume();
      await repo.applyTombstones(db, [{ model: 'volumes', id: early.id, device_id: owner, version: v(owner, 3) }]);
      expect(await repo.upsert(db, VOLUMES, [wire(early, owner, v(owner, 2))], true)).toBe(0);
      expect(await find(VOLUMES, early.id)).toBeNull();
      // the tombstone is per model: the same id in another model is not affected
      expect(await repo.upsert(db, VOLUMES, [wire({ ...volume(), id: loc.id }, owner, v(owner, 5))], true)).toBe(1);
      await sql`delete from volumes where id = ${loc.id}`.execute(db);
    });

    it('ignores entries whose location is tombstoned', async () => {
      const loc = location(null);
      const live = location(null);
      await repo.upsert(db, LOCATIONS, [wire(loc, owner, v(owner, 5)), wire(live, owner, v(owner, 5))], true);
      await repo.applyTombstones(db, [{ model: 'locations', id: loc.id, device_id: owner, version: v(owner, 6) }]);
      const orphan = entry(loc.id, 1);
      const fine = entry(live.id, 2);
      expect(
        await repo.upsert(db, ENTRIES, [wire(orphan, owner, v(owner, 7)), wire(fine, owner, v(owner, 7))], true),
      ).toBe(1);
      expect(await find(ENTRIES, orphan.id)).toBeNull();
      expect(await find(ENTRIES, fine.id)).not.toBeNull();
    });

    it('never overwrites a row that has a different device_id', async () => {
      const forger = randomUUID();
      const loc = location(null);
      await repo.upsert(db, LOCATIONS, [wire(loc, owner, v(owner, 5))], true);
      expect(await repo.upsert(db, LOCATIONS, [wire({ ...loc, name: 'forged' }, forger, v(forger, 50))], true)).toBe(0);
      expect(await repo.upsert(db, LOCATIONS, [wire({ ...loc, name: 'forged' }, forger, v(forger, 50))], false)).toBe(
        0,
      );
      expect(await find(LOCATIONS, loc.id)).toEqual(wire(loc, owner, v(owner, 5)));
      // nor does a tombstone from another device delete it
      await repo.applyTombstones(db, [{ model: 'locations', id: loc.id, device_id: forger, version: v(forger, 60) }]);
      expect(await find(LOCATIONS, loc.id)).toEqual(wire(loc, owner, v(owner, 5)));
    });
  });

  describe('remote deletes: applyTombstones', () => {
    const owner = randomUUID();
    const tombstoneRows = (id: string) => db.selectFrom('owned_tombstones').selectAll().where('id', '=', id).execute();

    it('is idempotent', async () => {
      const vol = volume();
      await repo.upsert(db, VOLUMES, [wire(vol, owner, v(owner, 5))], true);
      const t: Tombstone = { model: 'volumes', id: vol.id, device_id: owner, version: v(owner, 6) };
      expect(await repo.applyTombstones(db, [t])).toBe(1);
      expect(await find(VOLUMES, vol.id)).toBeNull();
      expect(await tombstoneRows(vol.id)).toEqual([t]);
      expect(await repo.applyTombstones(db, [t])).toBe(0);
      expect(await tombstoneRows(vol.id)).toEqual([t]);
      expect(await find(VOLUMES, vol.id)).toBeNull();
    });

    it('a batch that repeats a tombstone (a redelivered page, a duplicated message) applies it once', async () => {
      const loc = location(null);
      const ents = [entry(loc.id, 0), entry(loc.id, 1)];
      await repo.upsert(db, LOCATIONS, [wire(loc, owner, v(owner, 1))], true);
      await repo.upsert(
        db,
        ENTRIES,
        ents.map((e) => wire(e, owner, v(owner, 1))),
        true,
      );
      const older: Tombstone = { model: 'locations', id: loc.id, device_id: owner, version: v(owner, 2) };
      const newer: Tombstone = { ...older, version: v(owner, 3) };
      expect(await repo.applyTombstones(db, [older, newer, older])).toBe(1);
      expect(await tombstoneRows(loc.id)).toEqual([newer]);
      expect(await find(LOCATIONS, loc.id)).toBeNull();
      for (const e of ents) expect(await find(ENTRIES, e.id)).toBeNull();
      expect(await repo.applyTombstones(db, [newer, newer])).toBe(0);
    });

    it('a tombstone older than the row version does not delete the row', async () => {
      const vol = volume();
      await repo.upsert(db, VOLUMES, [wire(vol, owner, v(owner, 8))], true);
      await repo.applyTombstones(db, [{ model: 'volumes', id: vol.id, device_id: owner, version: v(owner, 7) }]);
      expect(await find(VOLUMES, vol.id)).toEqual(wire(vol, owner, v(owner, 8)));
    });

    it('keeps the newest tombstone: an older one does not lower it', async () => {
      const id = randomUUID();
      await repo.applyTombstones(db, [{ model: 'entries', id, device_id: owner, version: v(owner, 6) }]);
      expect(await repo.applyTombstones(db, [{ model: 'entries', id, device_id: owner, version: v(owner, 4) }])).toBe(
        0,
      );
      expect(await tombstoneRows(id)).toEqual([{ model: 'entries', id, device_id: owner, version: v(owner, 6) }]);
      expect(await repo.applyTombstones(db, [{ model: 'entries', id, device_id: owner, version: v(owner, 9) }])).toBe(
        1,
      );
      expect((await tombstoneRows(id))[0].version).toBe(v(owner, 9));
    });

    it("a location's tombstone removes its entries on the peer too", async () => {
      const loc = location(null);
      const other = location(null);
      const ents = Array.from({ length: 10 }, (_, i) => entry(loc.id, i));
      const keep = entry(other.id, 0);
      await repo.upsert(db, LOCATIONS, [wire(loc, owner, v(owner, 1)), wire(other, owner, v(owner, 1))], true);
      await repo.upsert(
        db,
        ENTRIES,
        [...ents.map((e) => wire(e, owner, v(owner, 2))), wire(keep, owner, v(owner, 2))],
        true,
      );
      await repo.applyTombstones(db, [{ model: 'locations', id: loc.id, device_id: owner, version: v(owner, 3) }]);
      expect(await find(LOCATIONS, loc.id)).toBeNull();
      const left = await sql<{
        id: string;
      }>`select id from entries where location_id in (${loc.id}, ${other.id})`.execute(db);
      expect(left.rows.map((r) => r.id)).toEqual([keep.id]);
      expect(await tombstoneRows(loc.id)).toHaveLength(1);
    });
  });

  describe('shared writes and the change log', () => {
    const sharedRepo = new SharedRepository();

    async function sharedDevice() {
      const id = randomUUID();
      const clock = new ClockService(id, DRIFT);
      await clock.load(db);
      const signal = new ChangeSignal();
      const notified: ChangeKind[] = [];
      signal.on('shared', () => notified.push('shared'));
      return { id, clock, notified, writer: new SharedWriter(db, clock, sharedRepo, signal) };
    }
    const changeLog = () => db.selectFrom('shared_changes').selectAll().orderBy('hlc').execute();
    const tagRow = (id: string) => db.selectFrom('tags').selectAll().where('id', '=', id).executeTakeFirst();

    beforeEach(async () => {
      await db.deleteFrom('shared_changes').execute();
    });

    it('a set writes the record with its field clocks and exactly one change-log row with the same hlc', async () => {
      const d = await sharedDevice();
      const id = randomUUID();
      const state = await d.writer.transact((w) => w.set(TAGS, { id }, { name: 'holiday', color: '#ff0000' }));
      const hlc = state.updatedHlc;
      expect(decodeHlc(hlc).node).toBe(d.id);
      expect(await persistedClock()).toBe(hlc);
      expect(state).toEqual({
        values: { name: 'holiday', color: '#ff0000' },
        clocks: { name: hlc, color: hlc },
        deletedHlc: null,
        updatedHlc: hlc,
      });
      expect(await tagRow(id)).toEqual({
        id,
        name: 'holiday',
        color: '#ff0000',
        clocks: { name: hlc, color: hlc },
        updated_hlc: hlc,
        deleted_hlc: null,
      });
      expect(await changeLog()).toEqual([
        {
          hlc,
          model: 'tags',
          record_key: id,
          op: 'set',
          fields: { name: 'holiday', color: '#ff0000' },
          published: false,
        },
      ]);
      expect(await sharedRepo.load(db, TAGS, { id })).toEqual(state);
      expect(d.notified).toEqual(['shared']);
    });

    it('a transaction that throws after the write leaves neither the record nor the change-log row', async () => {
      const d = await sharedDevice();
      const id = randomUUID();
      const before = await persistedClock();
      let stamped = '';
      await expect(
        d.writer.transact(async (w) => {
          stamped = (await w.set(TAGS, { id }, { name: 'ghost' })).updatedHlc;
          expect(await w.load(TAGS, { id })).not.toBeNull(); // visible inside the transaction…
          throw new Error('crash before commit');
        }),
      ).rejects.toThrow('crash before commit');
      expect(await tagRow(id)).toBeUndefined(); // …and gone with it
      expect(await changeLog()).toEqual([]);
      expect(await persistedClock()).toBe(before);
      expect(d.notified).toEqual([]);
      // the next write is stamped above the lost one, and logged once
      const next = await d.writer.transact((w) => w.set(TAGS, { id }, { name: 'real' }));
      expect(next.updatedHlc > stamped).toBe(true);
      expect((await changeLog()).map((c) => c.hlc)).toEqual([next.updatedHlc]);
    });

    it('a set keeps the other fields and their clocks; clocks are stored per field', async () => {
      const d = await sharedDevice();
      const id = randomUUID();
      const s1 = await d.writer.transact((w) => w.set(TAGS, { id }, { name: 'a', color: 'red' }));
      const s2 = await d.writer.transact((w) => w.set(TAGS, { id }, { color: 'blue' }));
      const h1 = s1.updatedHlc;
      const h2 = s2.updatedHlc;
      expect(h2 > h1).toBe(true);
      expect(await tagRow(id)).toEqual({
        id,
        name: 'a',
        color: 'blue',
        clocks: { name: h1, color: h2 },
        updated_hlc: h2,
        deleted_hlc: null,
      });
      const log = await changeLog();
      expect(log.map((c) => [c.hlc, c.op, c.fields])).toEqual([
        [h1, 'set', { name: 'a', color: 'red' }],
        [h2, 'set', { color: 'blue' }],
      ]);
      // setting a field to null is a value like any other, with its own clock
      const s3 = await d.writer.transact((w) => w.set(TAGS, { id }, { color: null }));
      expect(await tagRow(id)).toMatchObject({ name: 'a', color: null, clocks: { name: h1, color: s3.updatedHlc } });
    });

    it('several writes in one transaction each get their own stamp and change-log row', async () => {
      const d = await sharedDevice();
      const [a, b] = [randomUUID(), randomUUID()];
      await d.writer.transact(async (w) => {
        await w.set(TAGS, { id: a }, { name: 'a' });
        await w.set(TAGS, { id: b }, { name: 'b' });
        await w.set(TAGS, { id: a }, { color: 'green' });
      });
      const log = await changeLog();
      expect(log.map((c) => c.record_key)).toEqual([a, b, a]);
      expect(new Set(log.map((c) => c.hlc)).size).toBe(3);
      expect(await tagRow(a)).toMatchObject({
        name: 'a',
        color: 'green',
        updated_hlc: log[2].hlc,
        clocks: { name: log[0].hlc, color: log[2].hlc },
      });
      expect(d.notified).toEqual(['shared']);
    });

    it('a delete sets deleted_hlc and logs a delete; later edits do not bring the record back', async () => {
      const d = await sharedDevice();
      const id = randomUUID();
      await d.writer.transact((w) => w.set(TAGS, { id }, { name: 'temp' }));
      const del = await d.writer.transact((w) => w.delete(TAGS, { id }));
      const h = del.deletedHlc!;
      expect(h).toBe(del.updatedHlc);
      expect(await tagRow(id)).toMatchObject({ name: 'temp', deleted_hlc: h, updated_hlc: h });
      const log = await changeLog();
      expect(log[log.length - 1]).toEqual({
        hlc: h,
        model: 'tags',
        record_key: id,
        op: 'delete',
        fields: {},
        published: false,
      });
      const edited = await d.writer.transact((w) => w.set(TAGS, { id }, { name: 'edited after delete' }));
      expect(edited.deletedHlc).toBe(h);
      expect((await tagRow(id))!.deleted_hlc).toBe(h);
    });

    it('works for records with other keys: user_metadata by entry, tag_entries by (tag, entry)', async () => {
      const d = await sharedDevice();
      const entryId = randomUUID();
      const tagId = randomUUID();
      const meta = await d.writer.transact((w) =>
        w.set(USER_METADATA, { entry_id: entryId }, { favorite: true, notes: 'x' }),
      );
      expect(meta.values).toEqual({ favorite: true, hidden: false, notes: 'x' });
      expect(await sharedRepo.load(db, USER_METADATA, { entry_id: entryId })).toEqual(meta);
      const member = await d.writer.transact((w) =>
        w.set(TAG_ENTRIES, { tag_id: tagId, entry_id: entryId }, { present: true }),
      );
      expect(await sharedRepo.load(db, TAG_ENTRIES, { tag_id: tagId, entry_id: entryId })).toEqual(member);
      expect((await changeLog()).map((c) => [c.model, c.record_key, c.fields])).toEqual([
        ['user_metadata', entryId, { favorite: true, notes: 'x' }],
        ['tag_entries', `${tagId}:${entryId}`, { present: true }],
      ]);
    });

    it('unpublished, markPublished, pruneUpTo (only published rows at or below), logSize, oldest', async () => {
      const d = await sharedDevice();
      const id = randomUUID();
      const h: string[] = [];
      for (let i = 0; i < 5; i++)
        h.push((await d.writer.transact((w) => w.set(TAGS, { id }, { name: `n${i}` }))).updatedHlc);
      expect([...h].sort()).toEqual(h);
      expect(await sharedRepo.logSize(db)).toBe(5);
      expect((await sharedRepo.unpublished(db, 3)).map((c) => c.hlc)).toEqual(h.slice(0, 3));
      expect((await sharedRepo.unpublished(db, 3))[0]).toEqual({
        hlc: h[0],
        model: 'tags',
        record_key: id,
        op: 'set',
        fields: { name: 'n0' },
      });
      expect((await sharedRepo.changesAfter(db, h[1], 2)).map((c) => c.hlc)).toEqual(h.slice(2, 4));
      expect((await sharedRepo.changesAfter(db, null, 100)).map((c) => c.hlc)).toEqual(h);

      await sharedRepo.markPublished(db, h[2]);
      expect((await sharedRepo.unpublished(db, 100)).map((c) => c.hlc)).toEqual(h.slice(3));
      // h[3] is not published yet: pruning up to it removes only h[0..2]
      expect(await sharedRepo.pruneUpTo(db, h[3])).toBe(3);
      expect(await sharedRepo.logSize(db)).toBe(2);
      expect(await sharedRepo.oldest(db)).toBe(h[3]);
      expect(await sharedRepo.pruneUpTo(db, h[3])).toBe(0);

      await sharedRepo.markPublished(db, h[4]);
      expect(await sharedRepo.unpublished(db, 100)).toEqual([]);
      // only rows at or below the bound go, even when later ones are published
      expect(await sharedRepo.pruneUpTo(db, h[3])).toBe(1);
      expect(await sharedRepo.oldest(db)).toBe(h[4]);
      expect(await sharedRepo.pruneUpTo(db, ALL_ACKNOWLEDGED)).toBe(1);
      expect(await sharedRepo.logSize(db)).toBe(0);
      expect(await sharedRepo.oldest(db)).toBeNull();
    });
  });

  describe('content digest', () => {
    class Rollback extends Error {}

    it('hashes live content only, changes with it, and is computed on a fixed data set for the cross-database check', async () => {
      const owner = '00000000-0000-4000-8000-0000000000d1';
      const node = '00000000-0000-4000-8000-0000000000d2';
      const id = (n: number) => `00000000-0000-4000-8000-${String(n).padStart(12, '0')}`;
      const h = (n: number) => encodeHlc({ physical: 1_700_000_000_000 + n, logical: 0, node });
      const sharedRepo = new SharedRepository();
      const result = await db
        .transaction()
        .execute(async (tx) => {
          for (const m of MODELS) await sql`delete from ${sql.table(m.table)}`.execute(tx);
          await sql`delete from owned_tombstones`.execute(tx);
          const empty = await computeDigest(tx);
          await repo.upsert(
            tx,
            VOLUMES,
            [wire({ ...volume(), id: id(1), free_bytes: null }, owner, v(owner, 1))],
            true,
          );
          await repo.upsert(tx, LOCATIONS, [wire({ ...location(id(1)), id: id(2) }, owner, v(owner, 1))], true);
          await repo.upsert(
            tx,
            ENTRIES,
            [1, 2, 3].map((i) =>
              wire(
                { ...entry(id(2), i), id: id(10 + i), modified_at: '2024-02-29T23:59:59.999+02:00' },
                owner,
                v(owner, 2),
              ),
            ),
            true,
          );
          await repo.applyTombstones(tx, [{ model: 'entries', id: id(99), device_id: owner, version: v(owner, 3) }]);
          const tag = (name: string, deleted: string | null) => ({
            values: { name, color: null },
            clocks: { name: h(1) },
            deletedHlc: deleted,
            updatedHlc: deleted ?? h(1),
          });
          await sharedRepo.save(tx, TAGS, { id: id(20) }, tag('holiday', null));
          await sharedRepo.save(tx, TAGS, { id: id(21) }, tag('deleted', h(2)));
          await sharedRepo.save(
            tx,
            ALBUMS,
            { id: id(30) },
            {
              values: { name: 'trip', description: 'ünïcödé ✓' },
              clocks: { name: h(1), description: h(1) },
              deletedHlc: null,
              updatedHlc: h(1),
            },
          );
          await sharedRepo.save(
            tx,
            USER_METADATA,
            { entry_id: id(11) },
            {
              values: { favorite: true, hidden: false, notes: null },
              clocks: { favorite: h(1) },
              deletedHlc: null,
              updatedHlc: h(1),
            },
          );
          const member = (present: boolean) => ({
            values: { present },
            clocks: { present: h(1) },
            deletedHlc: null,
            updatedHlc: h(1),
          });
          await sharedRepo.save(tx, TAG_ENTRIES, { tag_id: id(20), entry_id: id(11) }, member(true));
          await sharedRepo.save(tx, TAG_ENTRIES, { tag_id: id(20), entry_id: id(12) }, member(false));
          const full = await computeDigest(tx);
          await sql`update entries set size_bytes = size_bytes + 1 where id = ${id(13)}`.execute(tx);
          const edited = await computeDigest(tx);
          throw Object.assign(new Rollback(), { digests: { empty, full, edited } });
        })
        .catch((e: unknown) => {
          if (e instanceof Rollback)
            return (e as Rollback & { digests: Record<string, Record<string, ModelDigest>> }).digests;
          throw e;
        });
      const { empty, full, edited } = result;
      expect(Object.keys(full)).toEqual(MODELS.map((m) => m.name));
      expect(Object.fromEntries(Object.entries(full).map(([k, d]) => [k, d.count]))).toEqual({
        volumes: 1,
        locations: 1,
        entries: 3,
        tags: 1, // the deleted tag is not content
        albums: 1,
        user_metadata: 1,
        tag_entries: 1, // an absent membership is not content
        album_entries: 0,
      });
      expect(full.album_entries).toEqual(empty.album_entries);
      expect(edited.entries.hash).not.toBe(full.entries.hash);
      expect({ ...edited, entries: full.entries }).toEqual(full);
      digests[mode] = full;
    });
  });

  describe('devices repository', () => {
    const devices = new DevicesRepository();
    const LIBRARY = '11111111-1111-4111-8111-111111111111';

    beforeEach(async () => {
      await db.deleteFrom('devices').execute();
      await db.deleteFrom('sync_local_state').where('key', 'in', ['device_id', 'library_id']).execute();
    });

    it('resolveSelf generates an id once and returns the same id later', async () => {
      const id = await devices.resolveSelf(db, { configuredId: null, name: 'laptop', libraryId: LIBRARY });
      expect(id).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/);
      expect(await devices.resolveSelf(db, { configuredId: null, name: 'laptop', libraryId: LIBRARY })).toBe(id);
      expect(await devices.resolveSelf(db, { configuredId: id, name: 'renamed', libraryId: LIBRARY })).toBe(id);
      const rows = await devices.list(db);
      expect(rows).toHaveLength(1);
      expect(rows[0]).toMatchObject({ id, name: 'renamed', library_id: LIBRARY, is_self: true, removed_at: null });
      expect(await devices.peers(db)).toEqual([]);
    });

    it('resolveSelf uses a configured id on first start and keeps it', async () => {
      const configured = randomUUID();
      expect(await devices.resolveSelf(db, { configuredId: configured, name: 'nas', libraryId: LIBRARY })).toBe(
        configured,
      );
      expect(await devices.resolveSelf(db, { configuredId: null, name: 'nas', libraryId: LIBRARY })).toBe(configured);
    });

    it('resolveSelf rejects a different configured DEVICE_ID or a different LIBRARY_ID, and changes nothing', async () => {
      const id = await devices.resolveSelf(db, { configuredId: null, name: 'laptop', libraryId: LIBRARY });
      const wrongDevice = await devices
        .resolveSelf(db, { configuredId: randomUUID(), name: 'laptop', libraryId: LIBRARY })
        .catch((e: unknown) => e);
      expect(wrongDevice).toBeInstanceOf(IdentityError);
      expect(wrongDevice).toMatchObject({ variable: 'DEVICE_ID', message: expect.stringMatching(/^DEVICE_ID: .*\b/) });
      const otherLibrary = randomUUID();
      const wrongLibrary = await devices
        .resolveSelf(db, { configuredId: null, name: 'laptop', libraryId: otherLibrary })
        .catch((e: unknown) => e);
      expect(wrongLibrary).toBeInstanceOf(IdentityError);
      expect(wrongLibrary).toMatchObject({ variable: 'LIBRARY_ID', message: expect.stringContaining(otherLibrary) });
      expect(await devices.resolveSelf(db, { configuredId: null, name: 'laptop', libraryId: LIBRARY })).toBe(id);
      expect((await devices.list(db)).map((d) => d.id)).toEqual([id]);
    });

    it('resolveSelf: two processes starting at once on one new database agree on one identity', async () => {
      const ids = await Promise.all(
        Array.from({ length: 4 }, () =>
          devices.resolveSelf(db, { configuredId: null, name: 'twin', libraryId: LIBRARY }),
        ),
      );
      expect(new Set(ids).size).toBe(1);
      const self = (await devices.list(db)).filter((d) => d.is_self);
      expect(self.map((d) => d.id)).toEqual([ids[0]]);
      expect(await devices.resolveSelf(db, { configuredId: null, name: 'twin', libraryId: LIBRARY })).toBe(ids[0]);
    });

    it('minimumSharedAck: null while an active peer never acked, removed peers ignored, else the minimum', async () => {
      await devices.resolveSelf(db, { configuredId: null, name: 'me', libraryId: LIBRARY });
      expect(await devices.minimumSharedAck(db)).toBe(ALL_ACKNOWLEDGED); // alone: nothing holds pruning back

      const [a, b, c] = [randomUUID(), randomUUID(), randomUUID()];
      const node = '00000000-0000-4000-8000-00000000000a';
      const h = (n: number) => encodeHlc({ physical: 1_700_000_000_000 + n, logical: 0, node });
      await devices.upsertPeer(db, { id: a, name: 'a', libraryId: LIBRARY });
      expect(await devices.minimumSharedAck(db)).toBeNull();
      await devices.recordAcks(db, a, { shared: h(5) });
      expect(await devices.minimumSharedAck(db)).toBe(h(5));

      await devices.upsertPeer(db, { id: b, name: 'b', libraryId: LIBRARY });
      expect(await devices.minimumSharedAck(db)).toBeNull(); // b never acknowledged
      await db.updateTable('devices').set({ removed_at: new Date() }).where('id', '=', b).execute();
      expect(await devices.minimumSharedAck(db)).toBe(h(5)); // b left the library

      await devices.upsertPeer(db, { id: c, name: 'c', libraryId: LIBRARY });
      await devices.recordAcks(db, c, { shared: h(3) });
      expect(await devices.minimumSharedAck(db)).toBe(h(3));
      await devices.recordAcks(db, a, { shared: h(2) }); // an older ack never lowers what a peer acknowledged
      expect((await devices.get(db, a))!.acked_shared).toBe(h(5));
      await devices.recordAcks(db, c, { shared: h(9) });
      expect(await devices.minimumSharedAck(db)).toBe(h(5));
    });
  });
});

describe('storage across databases', () => {
  it('the same data has the same digest on Postgres and on PGlite (same types, same text forms)', () => {
    expect(digests.postgres).toBeDefined();
    expect(digests.pglite).toEqual(digests.postgres);
  });
});
