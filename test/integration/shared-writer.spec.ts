import { randomUUID } from 'node:crypto';
import type { Db } from '@lib/db';
import {
  ALL_ACKNOWLEDGED,
  ChangeKind,
  ChangeSignal,
  ClockService,
  decodeHlc,
  SharedRepository,
  SharedWriter,
  TAG_ENTRIES,
  TAGS,
  USER_METADATA,
} from '@lib/sync';
import { DB_MODES, DRIFT, useTestDb, storageHelpers } from './storage-db';

/**
 * The shared write path (SharedWriter) and the change log it feeds (SharedRepository), on Postgres
 * and on PGlite.
 */

describe.each(DB_MODES)('storage on %s', (mode) => {
  let db: Db;
  useTestDb(mode, (d) => (db = d));
  const { persistedClock } = storageHelpers(() => db);

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
});
