import { sql } from 'kysely';
import { randomUUID } from 'node:crypto';
import { OwnedApplier, PEER_RPC, PeerClient } from '@lib/sync';
import type { JetStreamTransport } from '@lib/sync/transport/jetstream.transport';
import { BackfillService } from '@lib/sync/backfill/backfill';
import { digestOf, must, statusOf, waitConverged, waitPhase } from '../support/api';
import { Cluster } from '../support/cluster';
import { dropTestDatabases } from '../support/databases';
import { waitRows } from '../support/db-queries';
import type { TestDevice } from '../support/device-harness';
import { createEntries, createLocation, seedEntries } from '../support/fixtures';

/**
 * Issue 4, "Backfill of a new device": pages are written two at a time on Postgres (one at a time
 * on embedded PGlite, a single session). Their commits are chained, so the stored checkpoint
 * never passes a page that is not stored, even when a page fails while the next one is written.
 */
describe('backfill writes', () => {
  const cluster = new Cluster({ heartbeatIntervalMs: 500 });
  beforeAll(() => cluster.start());
  afterEach(() => jest.restoreAllMocks());
  afterAll(async () => {
    await cluster.dispose();
    await dropTestDatabases();
  });

  /** How many of A's entries lie at or below an owned cursor `version|kind|id` (entries only). */
  async function entriesUpTo(a: TestDevice, cursor: string): Promise<number> {
    const [version, , id] = cursor.split('|');
    const r = await sql<{
      n: number;
    }>`select count(*)::int as n from entries where device_id = ${a.deviceId} and (version, id) <= (${version}, ${id}::uuid)`.execute(
      a.db,
    );
    return r.rows[0].n;
  }

  it('a page failing while the next is written: nothing past the last good page is committed, and the retry finishes identical', async () => {
    const a = await cluster.device('a');
    await seedEntries(a, 12_000, 'a'); // several pages (a page is at most 4,000 rows and one max_payload)

    // the joining device's second page fails once; the third is then being written alongside it
    const apply = OwnedApplier.prototype.apply;
    let calls = 0;
    jest.spyOn(OwnedApplier.prototype, 'apply').mockImplementation(async function (
      this: OwnedApplier,
      ...args: Parameters<OwnedApplier['apply']>
    ) {
      // only a backfill orders its commits; count its pages of entries
      const entriesPage =
        !!args[1]?.beforeCommit &&
        'json' in args[0] &&
        (args[0].ids.has('entries') || args[0].stage?.model.name === 'entries');
      if (entriesPage && ++calls === 2) {
        await new Promise((r) => setTimeout(r, 50)); // let the next page start meanwhile
        throw new Error('injected failure of page 2');
      }
      return apply.apply(this, args);
    });

    // what C holds when the backfill starts over: exactly the pages up to its checkpoint
    const resumed: { checkpoint: string | null; held: number; expected: number }[] = [];
    const runFrom = BackfillService.prototype.runFrom;
    let c: TestDevice | null = null;
    let runs = 0;
    jest.spyOn(BackfillService.prototype, 'runFrom').mockImplementation(async function (
      this: BackfillService,
      ...args: Parameters<BackfillService['runFrom']>
    ) {
      if (++runs > 1 && c) {
        const row = await c.db
          .selectFrom('sync_checkpoints')
          .select('value')
          .where('key', '=', `backfill:owned:${a.deviceId}:entries`)
          .executeTakeFirst();
        const held = (await sql<{ n: number }>`select count(*)::int as n from entries`.execute(c.db)).rows[0].n;
        resumed.push({
          checkpoint: row?.value ?? null,
          held,
          expected: row?.value ? await entriesUpTo(a, row.value) : 0,
        });
      }
      return runFrom.apply(this, args);
    });

    c = await cluster.device('c', { wait: false });
    await waitPhase(c, 'ready');
    expect(calls).toBeGreaterThanOrEqual(3); // the failed page, the one written alongside it, and the retry's
    expect(resumed.length).toBeGreaterThanOrEqual(1);
    const first = resumed[0];
    expect(first.checkpoint).not.toBeNull(); // page 1 committed with its checkpoint...
    expect(first.held).toBe(first.expected); // ...and nothing past it: not page 2 (failed), not page 3 (chained to it)
    expect(first.held).toBeGreaterThan(0);
    expect(first.held).toBeLessThan(12_000);
    await waitConverged([a, c], { entries: 12_000, locations: 1 });
    const s = await statusOf(c);
    expect(s.backfill?.items).toEqual(
      expect.arrayContaining([
        expect.objectContaining({ owner: a.deviceId, model: 'entries', startedAfter: first.checkpoint }),
      ]),
    );
  });

  it('a source that does not answer owned.copy (a device from before it) serves its pages as JSON', async () => {
    const a = await cluster.device('a3');
    await seedEntries(a, 6_000, 'a3');
    // owned.copy asked of nobody: NATS answers "no responders", as for a device without the method
    const copyAsked: string[] = [];
    jest.spyOn(PeerClient.prototype, 'ownedCopyPage').mockImplementation(function (this: PeerClient, peer, request) {
      copyAsked.push(peer);
      const transport = (this as unknown as { transport: JetStreamTransport }).transport;
      return transport.request(transport.subjects.rpc(randomUUID(), PEER_RPC.ownedCopyPage), request, 5_000);
    });
    const jsonPages = jest.spyOn(OwnedApplier.prototype, 'preparePage');
    const copyPages = jest.spyOn(OwnedApplier.prototype, 'prepareCopyPage');
    const c = await cluster.device('c3', { wait: false });
    await waitPhase(c, 'ready');
    const held = (await digestOf(a)).entries.count;
    await waitRows([c], 'entries', held);
    expect(await digestOf(c)).toEqual(await digestOf(a));
    expect(copyAsked.length).toBeGreaterThan(0);
    // asked once per source, then JSON pages only
    expect(new Set(copyAsked).size).toBe(copyAsked.length);
    expect(copyPages).not.toHaveBeenCalled();
    expect(jsonPages.mock.calls.length).toBeGreaterThan(1);
  });

  it('a device on embedded PGlite backfills page by page, then syncs both ways', async () => {
    const a = await cluster.device('a2');
    const loc = await createLocation(a, 'photos');
    await seedEntries(a, 9_000, 'a2');
    const c = await cluster.device('c2', { databaseUrl: null }); // DATA_DIR, no DATABASE_URL
    await waitPhase(c, 'ready');
    // the library holds the previous test's entries too: the new device must hold all of them
    const held = (await digestOf(a)).entries.count;
    expect(held).toBeGreaterThanOrEqual(9_000);
    await waitRows([c], 'entries', held);
    expect(await digestOf(c)).toEqual(await digestOf(a));
    // its backfill's progress in /metrics: done, out of the total its source counted
    const m = String((await c.req<{ raw: string }>('GET', '/metrics')).body.raw);
    const gauge = (name: string) => Number(new RegExp(`^${name}\\{[^}]*\\} (\\d+)$`, 'm').exec(m)?.[1]);
    expect(gauge('sync_backfill_rows_done')).toBeGreaterThanOrEqual(held);
    expect(gauge('sync_backfill_rows_done')).toBe(gauge('sync_backfill_rows_total'));
    // live, both ways
    await createEntries(a, loc, 10, 'after');
    const locC = await createLocation(c, 'on-pglite');
    await createEntries(c, locC, 10, 'from-c');
    await waitConverged([a, c], { entries: held + 20 });
    expect((await must(a, 'GET', `/locations/${locC}`)).deviceId).toBe(c.deviceId);
  });
});
