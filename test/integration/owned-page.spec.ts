import { randomUUID } from 'node:crypto';
import type { Db } from '@lib/db';
import {
  ClockService,
  DevicesRepository,
  ENTRIES,
  LOCATIONS,
  OwnedApplier,
  OwnedModel,
  OwnedRepository,
  RejectedMessageError,
  SyncMetrics,
} from '@lib/sync';
import { DB_MODES, DRIFT, entry, location, storageHelpers, useTestDb, v, wire } from './storage-db';

/**
 * A backfill or catch-up page (values in column order, protocol.ts OwnedPageReply) is checked
 * without making row objects and written from its JSON as it came (OwnedApplier.preparePage).
 */
describe.each(DB_MODES)('owned pages on %s', (mode) => {
  let db: Db;
  useTestDb(mode, (d) => (db = d));
  const repo = new OwnedRepository();
  const { find } = storageHelpers(() => db, repo);
  const library = randomUUID();

  async function applier(): Promise<OwnedApplier> {
    const clock = new ClockService(randomUUID(), DRIFT);
    await clock.load(db);
    return new OwnedApplier(db, clock, repo, new DevicesRepository(), new SyncMetrics());
  }
  const values = (model: OwnedModel, row: Record<string, unknown>) => model.columns.map((c) => row[c]);
  const end = (version: string) => `${version}|9|ffffffff-ffff-ffff-ffff-ffffffffffff`;

  it('writes the rows and tombstones of a page, the newest of a repeated id, as a message would', async () => {
    const a = await applier();
    const owner = randomUUID();
    const loc = wire(location(null), owner, v(owner, 1));
    const e1 = wire(entry(loc.id, 1), owner, v(owner, 2));
    const e1newer = { ...e1, name: 'renamed.jpg', version: v(owner, 3) };
    const gone = wire(entry(loc.id, 2), owner, v(owner, 2));
    const page = {
      rows: [
        { model: 'locations', values: [values(LOCATIONS, loc)] },
        { model: 'entries', values: [values(ENTRIES, e1newer), values(ENTRIES, e1), values(ENTRIES, gone)] },
      ],
      tombstones: [{ model: 'entries', id: gone.id, device_id: owner, version: v(owner, 4) }],
    };
    const prepared = a.preparePage(library, owner, null, end(v(owner, 4)), page);
    expect(await a.apply(prepared)).toBe(true);
    expect(await find(LOCATIONS, loc.id)).toEqual(loc);
    expect(await find(ENTRIES, e1.id)).toEqual(e1newer);
    expect(await find(ENTRIES, gone.id)).toBeNull();
  });

  it('refuses a page with a row of another owner, of the wrong width or with a bad value, and writes nothing', async () => {
    const a = await applier();
    const owner = randomUUID();
    const loc = wire(location(null), owner, v(owner, 1));
    const other = wire(location(null), randomUUID(), v(owner, 1));
    const bad = [
      [values(LOCATIONS, loc), values(LOCATIONS, other)],
      [values(LOCATIONS, loc), values(LOCATIONS, loc).slice(1)],
      [values(LOCATIONS, loc), values(LOCATIONS, { ...loc, id: 'not-a-uuid' })],
    ];
    for (const rows of bad) {
      expect(() =>
        a.preparePage(library, owner, null, end(v(owner, 1)), {
          rows: [{ model: 'locations', values: rows }],
          tombstones: [],
        }),
      ).toThrow(RejectedMessageError);
    }
    expect(() =>
      a.preparePage(library, owner, null, end(v(owner, 1)), {
        rows: [],
        tombstones: [{ model: 'entries', id: 'x', device_id: owner, version: v(owner, 1) }],
      }),
    ).toThrow(RejectedMessageError);
    expect(await find(LOCATIONS, loc.id)).toBeNull();
  });

  /**
   * A backfill's bulk page (protocol.ts OwnedCopyPageReply): rows as COPY text, read by Postgres
   * on the source (OwnedRepository.copyPage) and staged, checked and merged by Postgres on the
   * receiver (OwnedApplier.prepareCopyPage and apply): the same rows and the same refusals as the
   * JSON page, with no row objects in between.
   */
  describe('as COPY text', () => {
    const cursor = (model: OwnedModel, version: string) =>
      `${version}|${model.order}|ffffffff-ffff-ffff-ffff-ffffffffffff`;
    const lines = (data: Buffer | string) => data.toString().split('\n').filter(Boolean);
    const col = (model: OwnedModel, line: string, c: string) => line.split('\t')[model.columns.indexOf(c)];
    const ownerCount = async (owner: string) =>
      Number(
        (
          await db
            .selectFrom('entries')
            .select((eb) => eb.fn.countAll().as('n'))
            .where('device_id', '=', owner)
            .executeTakeFirstOrThrow()
        ).n,
      );

    /** An owner's location (no volume: a null) and three entries, stored as a backfill stores them. */
    async function source(a: OwnedApplier) {
      const owner = randomUUID();
      const loc = wire(location(null), owner, v(owner, 1));
      const entries = [1, 2, 3].map((i) =>
        wire(entry(loc.id, i, { name: `f${i}\t"quoted"\\.jpg` }), owner, v(owner, 1 + i)),
      );
      const page = {
        rows: [
          { model: 'locations', values: [values(LOCATIONS, loc)] },
          { model: 'entries', values: entries.map((e) => values(ENTRIES, e)) },
        ],
        tombstones: [],
      };
      await a.apply(
        a.preparePage(library, owner, null, `${v(owner, 9)}|9|ffffffff-ffff-ffff-ffff-ffffffffffff`, page),
        {
          raiseWatermark: false,
        },
      );
      return { owner, loc, entries };
    }

    it('reads pages in (version, id) order after a cursor, and writes them back as they were', async () => {
      const a = await applier();
      const { owner, loc, entries } = await source(a);

      const first = lines(await repo.copyPage(db, owner, ENTRIES, null, 2));
      expect(first.map((l) => col(ENTRIES, l, 'id'))).toEqual([entries[0].id, entries[1].id]);
      const after = `${col(ENTRIES, first[1], 'version')}|${ENTRIES.order}|${col(ENTRIES, first[1], 'id')}`;
      const rest = lines(await repo.copyPage(db, owner, ENTRIES, after, 2));
      expect(rest.map((l) => col(ENTRIES, l, 'id'))).toEqual([entries[2].id]);
      expect(lines(await repo.copyPage(db, randomUUID(), ENTRIES, null, 10))).toEqual([]);
      const locs = lines(await repo.copyPage(db, owner, LOCATIONS, null, 10));
      expect(col(LOCATIONS, locs[0], 'volume_id')).toBe('\\N');

      // the page applied into a store that lost those rows gives them back exactly
      const all = (await repo.copyPage(db, owner, ENTRIES, null, 10)).toString();
      await db.deleteFrom('entries').where('device_id', '=', owner).execute();
      const page = { copy: all, rows: 3, last: cursor(ENTRIES, v(owner, 4)) };
      expect(await a.apply(a.prepareCopyPage(library, owner, 'entries', page), { raiseWatermark: false })).toBe(true);
      for (const e of entries) expect(await find(ENTRIES, e.id)).toEqual(e);
      expect(await find(LOCATIONS, loc.id)).toEqual(loc);
    });

    it('refuses a page with a bad value, a row of another owner, a wrong count or a row past its end, and writes nothing', async () => {
      const a = await applier();
      const { owner, entries } = await source(a);
      const all = lines(await repo.copyPage(db, owner, ENTRIES, null, 10));
      await db.deleteFrom('entries').where('device_id', '=', owner).execute();
      /** The page with column c of its second row replaced. */
      const withValue = (c: string, value: string) =>
        all
          .map((l, i) => {
            if (i !== 1) return l;
            const cells = l.split('\t');
            cells[ENTRIES.columns.indexOf(c)] = value;
            return cells.join('\t');
          })
          .join('\n') + '\n';
      const end = cursor(ENTRIES, v(owner, 4));
      const cases: [string, { copy: string; rows: number; last: string }][] = [
        ['invalid_row', { copy: withValue('kind', 'link'), rows: 3, last: end }],
        ['invalid_row', { copy: withValue('modified_at', 'infinity'), rows: 3, last: end }],
        ['invalid_row', { copy: withValue('modified_at', '0000-12-31 00:00:00+00 BC'), rows: 3, last: end }],
        ['invalid_row', { copy: withValue('size_bytes', '-1'), rows: 3, last: end }],
        ['invalid_row', { copy: withValue('size_bytes', 'many'), rows: 3, last: end }],
        ['invalid_row', { copy: withValue('name', 'x'.repeat(1001)), rows: 3, last: end }],
        ['invalid_row', { copy: withValue('version', 'yesterday'), rows: 3, last: end }],
        ['invalid_row', { copy: withValue('location_id', '\\N'), rows: 3, last: end }],
        ['invalid_row', { copy: withValue('id', 'not-a-uuid'), rows: 3, last: end }],
        ['not_owner', { copy: withValue('device_id', randomUUID()), rows: 3, last: end }],
        ['malformed', { copy: all.join('\n') + '\n', rows: 2, last: end }],
        ['malformed', { copy: all.join('\n') + '\n', rows: 3, last: cursor(ENTRIES, v(owner, 3)) }],
        ['invalid_row', { copy: all.join('\n') + '\tone more\n', rows: 3, last: end }],
      ];
      for (const [i, [reason, page]] of cases.entries()) {
        const failure = await a
          .apply(a.prepareCopyPage(library, owner, 'entries', page), { raiseWatermark: false })
          .then(
            () => null,
            (e: unknown) => e,
          );
        expect(failure).toBeInstanceOf(RejectedMessageError);
        expect({ case: i, reason: (failure as RejectedMessageError).reason }).toEqual({ case: i, reason });
        expect(await ownerCount(owner)).toBe(0);
      }
      // an envelope that is not a page is refused before any database work
      expect(() => a.prepareCopyPage(library, owner, 'nope', { copy: '', rows: 1, last: end })).toThrow(
        RejectedMessageError,
      );
      expect(() => a.prepareCopyPage(library, owner, 'entries', { copy: '', rows: 0, last: end })).toThrow(
        RejectedMessageError,
      );
      expect(() =>
        a.prepareCopyPage(library, owner, 'entries', { copy: '', rows: 1, last: cursor(LOCATIONS, v(owner, 4)) }),
      ).toThrow(RejectedMessageError);
      // and the good page still applies afterwards: the staging table was left empty
      const good = { copy: all.join('\n') + '\n', rows: 3, last: end };
      await a.apply(a.prepareCopyPage(library, owner, 'entries', good), { raiseWatermark: false });
      expect(await ownerCount(owner)).toBe(3);
      expect(await find(ENTRIES, entries[1].id)).toEqual(entries[1]);
    });
  });
});
