import { randomUUID } from 'node:crypto';
import type { Db } from '@lib/db';
import {
  decodeHlc,
  encodeCursor,
  ENTRIES,
  LOCATIONS,
  NotFoundError,
  NotOwnerError,
  OWNED_MODELS,
  OwnedRepository,
  OwnedRow,
  TOMBSTONE_KIND,
  VOLUMES,
} from '@lib/sync';
import { DB_MODES, entry, location, useTestDb, storageHelpers, v, volume, wire } from './storage-db';

/**
 * The owner's write path of device-owned data (OwnedWriter): versions and wall times, rollback,
 * ownership, and deletes with their tombstones, on Postgres and on PGlite.
 */

describe.each(DB_MODES)('storage on %s', (mode) => {
  let db: Db;
  const repo = new OwnedRepository();
  useTestDb(mode, (d) => (db = d));
  const { persistedClock, ownerDevice, rowsOf, tombstonesOf, find, pageAll } = storageHelpers(() => db, repo);

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
      await repo.applyRows(db, LOCATIONS, [wire(theirs, other, v(other, 1))]);
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
      await repo.applyRows(db, LOCATIONS, [wire(foreign, other, v(other, 1))]);
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
});
