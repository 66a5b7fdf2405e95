import { randomUUID } from 'node:crypto';
import fc from 'fast-check';
import { KyselyPlugin, sql } from 'kysely';
import type { Db } from '@lib/db';
import {
  encodeCursor,
  ENTRIES,
  LOCATIONS,
  OWNED_MODELS,
  OwnedChange,
  OwnedRepository,
  OwnedRow,
  Tombstone,
  TOMBSTONE_KIND,
  VOLUMES,
} from '@lib/sync';
import { DB_MODES, entry, location, useTestDb, storageHelpers, v, volume, wire } from './storage-db';

/**
 * The device-owned tables (OwnedRepository): an owner's change stream read page by page, and the
 * remote apply rules of rows and tombstones, on Postgres and on PGlite.
 */

describe.each(DB_MODES)('storage on %s', (mode) => {
  let db: Db;
  const repo = new OwnedRepository();
  useTestDb(mode, (d) => (db = d));
  const { ownerDevice, find, pageAll, expectedCursors } = storageHelpers(() => db, repo);

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
      await repo.applyRows(db, LOCATIONS, [wire(sl, stranger, v(stranger, 5))]);
      await repo.applyRows(db, ENTRIES, [wire(entry(sl.id, 1), stranger, v(stranger, 5))]);
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
      expect(await repo.applyRows(db, LOCATIONS, [wire(loc, owner, v(owner, 5))])).toBe(1);
      expect(await find(LOCATIONS, loc.id)).toEqual(wire(loc, owner, v(owner, 5)));
      expect(await repo.applyRows(db, LOCATIONS, [wire(loc, owner, v(owner, 5))])).toBe(0); // redelivery
      expect(await repo.applyRows(db, LOCATIONS, [wire({ ...loc, name: 'older' }, owner, v(owner, 3))])).toBe(0);
      expect(await repo.applyRows(db, LOCATIONS, [wire({ ...loc, name: 'same version' }, owner, v(owner, 5))])).toBe(0);
      expect(
        await repo.applyRows(db, LOCATIONS, [wire({ ...loc, name: 'same ms, lower counter' }, owner, v(owner, 4, 9))]),
      ).toBe(0);
      expect(await find(LOCATIONS, loc.id)).toMatchObject({ name: 'photos', version: v(owner, 5) });
      expect(await repo.applyRows(db, LOCATIONS, [wire({ ...loc, name: 'newer' }, owner, v(owner, 5, 1))])).toBe(1);
      expect(await find(LOCATIONS, loc.id)).toMatchObject({ name: 'newer', version: v(owner, 5, 1) });
    });

    it('a message that repeats an id applies its newest version once (in either order)', async () => {
      const a = location(null);
      const b = location(null);
      const older = (l: typeof a) => wire({ ...l, name: 'older' }, owner, v(owner, 6));
      const newer = (l: typeof a) => wire({ ...l, name: 'newer' }, owner, v(owner, 7));
      expect(await repo.applyRows(db, LOCATIONS, [older(a), newer(a), newer(b), older(b)])).toBe(2);
      expect(await find(LOCATIONS, a.id)).toMatchObject({ name: 'newer', version: v(owner, 7) });
      expect(await find(LOCATIONS, b.id)).toMatchObject({ name: 'newer', version: v(owner, 7) });
    });

    it('skips what lies at or below the watermark it is given', async () => {
      const [a, b] = [location(null), location(null)].sort((x, y) => (x.id < y.id ? -1 : 1));
      const held = encodeCursor({ version: v(owner, 7), kind: LOCATIONS.order, id: a.id });
      const rows = [wire(a, owner, v(owner, 7)), wire(b, owner, v(owner, 7)), wire(location(null), owner, v(owner, 6))];
      expect(await repo.applyRows(db, LOCATIONS, rows, held)).toBe(1);
      expect(await find(LOCATIONS, a.id)).toBeNull();
      expect(await find(LOCATIONS, b.id)).toMatchObject({ version: v(owner, 7) });
    });

    it('ends on the newer version whatever the arrival order', async () => {
      const a = location(null);
      const b = location(null);
      await repo.applyRows(db, LOCATIONS, [wire({ ...a, name: 'v9' }, owner, v(owner, 9))]);
      await repo.applyRows(db, LOCATIONS, [wire({ ...a, name: 'v8' }, owner, v(owner, 8))]);
      await repo.applyRows(db, LOCATIONS, [wire({ ...b, name: 'v8' }, owner, v(owner, 8))]);
      await repo.applyRows(db, LOCATIONS, [wire({ ...b, name: 'v9' }, owner, v(owner, 9))]);
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
              for (const s of deliveries) await repo.applyRows(db, ENTRIES, [s]);
            } else {
              await db.transaction().execute(async (tx) => {
                for (const s of deliveries) await repo.applyRows(tx, ENTRIES, [s]);
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
      await repo.applyRows(db, LOCATIONS, [wire(a, owner, v(owner, 5)), wire(b, owner, v(owner, 5))]);
      const n = await repo.applyRows(db, LOCATIONS, [
        wire({ ...a, name: 'older' }, owner, v(owner, 4)),
        wire({ ...b, name: 'newer' }, owner, v(owner, 6)),
        wire(c, owner, v(owner, 1)),
      ]);
      expect(n).toBe(2);
      expect((await find(LOCATIONS, a.id))!.name).toBe('photos');
      expect((await find(LOCATIONS, b.id))!.name).toBe('newer');
      expect(await find(LOCATIONS, c.id)).not.toBeNull();
    });

    it('ignores a row whose id is tombstoned with a version at or above its own', async () => {
      const loc = location(null);
      await repo.applyRows(db, LOCATIONS, [wire(loc, owner, v(owner, 5))]);
      await repo.applyTombstones(db, [{ model: 'locations', id: loc.id, device_id: owner, version: v(owner, 10) }]);
      expect(await find(LOCATIONS, loc.id)).toBeNull();
      // the late redelivery of old states must not resurrect it
      expect(await repo.applyRows(db, LOCATIONS, [wire(loc, owner, v(owner, 5))])).toBe(0);
      expect(await repo.applyRows(db, LOCATIONS, [wire(loc, owner, v(owner, 9))])).toBe(0);
      expect(await repo.applyRows(db, LOCATIONS, [wire(loc, owner, v(owner, 10))])).toBe(0);
      expect(await find(LOCATIONS, loc.id)).toBeNull();
      // a tombstone that arrives before the row it deletes (reordering) also keeps it out
      const early = volume();
      await repo.applyTombstones(db, [{ model: 'volumes', id: early.id, device_id: owner, version: v(owner, 3) }]);
      expect(await repo.applyRows(db, VOLUMES, [wire(early, owner, v(owner, 2))])).toBe(0);
      expect(await find(VOLUMES, early.id)).toBeNull();
      // the tombstone is per model: the same id in another model is not affected
      expect(await repo.applyRows(db, VOLUMES, [wire({ ...volume(), id: loc.id }, owner, v(owner, 5))])).toBe(1);
      await sql`delete from volumes where id = ${loc.id}`.execute(db);
    });

    it('ignores entries whose location is tombstoned', async () => {
      const loc = location(null);
      const live = location(null);
      await repo.applyRows(db, LOCATIONS, [wire(loc, owner, v(owner, 5)), wire(live, owner, v(owner, 5))]);
      await repo.applyTombstones(db, [{ model: 'locations', id: loc.id, device_id: owner, version: v(owner, 6) }]);
      const orphan = entry(loc.id, 1);
      const fine = entry(live.id, 2);
      expect(
        await repo.applyRows(db, ENTRIES, [wire(orphan, owner, v(owner, 7)), wire(fine, owner, v(owner, 7))]),
      ).toBe(1);
      expect(await find(ENTRIES, orphan.id)).toBeNull();
      expect(await find(ENTRIES, fine.id)).not.toBeNull();
    });

    it('never overwrites a row that has a different device_id', async () => {
      const forger = randomUUID();
      const loc = location(null);
      await repo.applyRows(db, LOCATIONS, [wire(loc, owner, v(owner, 5))]);
      expect(await repo.applyRows(db, LOCATIONS, [wire({ ...loc, name: 'forged' }, forger, v(forger, 50))])).toBe(0);
      expect(await repo.upsert(db, LOCATIONS, [wire({ ...loc, name: 'forged' }, forger, v(forger, 50))])).toBe(0);
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
      await repo.applyRows(db, VOLUMES, [wire(vol, owner, v(owner, 5))]);
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
      await repo.applyRows(db, LOCATIONS, [wire(loc, owner, v(owner, 1))]);
      await repo.applyRows(
        db,
        ENTRIES,
        ents.map((e) => wire(e, owner, v(owner, 1))),
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
      await repo.applyRows(db, VOLUMES, [wire(vol, owner, v(owner, 8))]);
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
      await repo.applyRows(db, LOCATIONS, [wire(loc, owner, v(owner, 1)), wire(other, owner, v(owner, 1))]);
      await repo.applyRows(db, ENTRIES, [
        ...ents.map((e) => wire(e, owner, v(owner, 2))),
        wire(keep, owner, v(owner, 2)),
      ]);
      await repo.applyTombstones(db, [{ model: 'locations', id: loc.id, device_id: owner, version: v(owner, 3) }]);
      expect(await find(LOCATIONS, loc.id)).toBeNull();
      const left = await sql<{
        id: string;
      }>`select id from entries where location_id in (${loc.id}, ${other.id})`.execute(db);
      expect(left.rows.map((r) => r.id)).toEqual([keep.id]);
      expect(await tombstoneRows(loc.id)).toHaveLength(1);
    });
  });
});
