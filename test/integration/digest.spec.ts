import { sql } from 'kysely';
import type { Db } from '@lib/db';
import {
  ALBUMS,
  computeDigest,
  encodeHlc,
  ENTRIES,
  LOCATIONS,
  ModelDigest,
  MODELS,
  OwnedRepository,
  SharedRepository,
  TAG_ENTRIES,
  TAGS,
  USER_METADATA,
  VOLUMES,
} from '@lib/sync';
import { DB_MODES, DbMode, entry, location, useTestDb, v, volume, wire } from './storage-db';

/** The content digest (computeDigest): live content only, and the same on Postgres and on PGlite. */

/** Digests of one fixed data set, per database mode (compared across modes at the end). */
const digests: Partial<Record<DbMode, Record<string, ModelDigest>>> = {};

describe.each(DB_MODES)('storage on %s', (mode) => {
  let db: Db;
  const repo = new OwnedRepository();
  useTestDb(mode, (d) => (db = d));

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
          await repo.applyRows(tx, VOLUMES, [wire({ ...volume(), id: id(1), free_bytes: null }, owner, v(owner, 1))]);
          await repo.applyRows(tx, LOCATIONS, [wire({ ...location(id(1)), id: id(2) }, owner, v(owner, 1))]);
          await repo.applyRows(
            tx,
            ENTRIES,
            [1, 2, 3].map((i) =>
              wire(
                { ...entry(id(2), i), id: id(10 + i), modified_at: '2024-02-29T23:59:59.999+02:00' },
                owner,
                v(owner, 2),
              ),
            ),
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
});

describe('storage across databases', () => {
  it('the same data has the same digest on Postgres and on PGlite (same types, same text forms)', () => {
    expect(digests.postgres).toBeDefined();
    expect(digests.pglite).toEqual(digests.postgres);
  });
});
