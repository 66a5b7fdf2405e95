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
});
