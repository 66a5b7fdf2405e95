import { digestOf, must, peerIn, statusOf, waitConverged, waitPhase } from '../support/api';
import { Cluster } from '../support/cluster';
import { dropTestDatabases } from '../support/databases';
import { createEntries, createLocation, createTag } from '../support/fixtures';

/**
 * Issue 4, "Backfill of a new device ... including the device-owned data of devices that are
 * offline now": A's data reaches a new device C through B while A is down.
 */
describe('backfill of an offline owner through a third device', () => {
  const cluster = new Cluster({ heartbeatIntervalMs: 500 });
  beforeAll(() => cluster.start());
  afterAll(async () => {
    await cluster.dispose();
    await dropTestDatabases();
  });

  it("a new device gets the offline owner's entries from a peer that holds them", async () => {
    const a = await cluster.device('a');
    const locA = await createLocation(a, 'a-photos');
    const before = await createEntries(a, locA, 1500, 'a-old');
    const tag = await createTag(a, 'from-a', 'blue');
    await must(a, 'PUT', `/entries/${before[0]}/metadata`, { favorite: true, notes: 'by a' });
    await must(a, 'PUT', `/tags/${tag}/entries/${before[1]}`);

    const b = await cluster.device('b'); // backfills from A
    // after B joined: more of A's writes (live), one of them a delete, and writes of B's own
    await createEntries(a, locA, 500, 'a-new');
    await must(a, 'DELETE', `/entries/${before[2]}`);
    const locB = await createLocation(b, 'b-docs');
    await createEntries(b, locB, 300, 'b');
    await createTag(b, 'from-b');
    const expected = { entries: 1500 + 500 - 1 + 300, locations: 2, tags: 2, user_metadata: 1, tag_entries: 1 };
    await waitConverged([a, b], expected);
    const beforeA = await digestOf(a);

    await cluster.close(a); // the owner is gone
    const c = await cluster.device('c'); // only B answers
    await waitPhase(c, 'ready');
    expect(await digestOf(c)).toEqual(await digestOf(b));
    expect(await digestOf(c)).toEqual(beforeA);
    const entriesOfA = await must(c, 'GET', `/entries?deviceId=${a.deviceId}&limit=1000`);
    expect(entriesOfA.items.every((e: { deviceId: string }) => e.deviceId === a.deviceId)).toBe(true);
    expect(await must(c, 'GET', `/entries/${before[2]}`).catch((e: Error) => e.message)).toMatch(/404/);
    const status = await statusOf(c);
    expect(status.backfill?.source).toBe(b.deviceId);
    expect(status.backfill?.items).toEqual(
      expect.arrayContaining([
        expect.objectContaining({ owner: a.deviceId, model: 'entries', done: 1999, startedAfter: null }),
      ]),
    );
    // C knows A as a peer of the library (offline), with a state watermark covering its rows
    const knownA = peerIn(status, a.deviceId);
    expect(knownA).toBeDefined();
    expect(knownA!.online).toBe(false);
    expect(knownA!.stateWatermark).not.toBeNull();

    // A comes back and writes: C gets it (A's stream continues above C's watermark)
    const a2 = await cluster.restart(a);
    await createEntries(a2, locA, 10, 'a-back');
    await waitConverged([a2, b, c], { ...expected, entries: expected.entries + 10 });
  });
});
