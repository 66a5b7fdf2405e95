import { randomUUID } from 'node:crypto';
import { sql } from 'kysely';
import { endOfVersion, ENTRIES, LibraryTrust, LOCATIONS, OwnedRepository } from '@lib/sync';
import { digestOf, must, peerIn, statusOf, waitConverged } from '../support/api';
import { Cluster, clusterPerTest } from '../support/cluster';
import type { TestDevice } from '../support/device-harness';
import { waitFor } from '../support/device-harness';
import { createEntries, createLocation } from '../support/fixtures';

/**
 * Issue 4 / docs/design.md: "Tombstones are removed only once every known peer has confirmed it has
 * seen past them (its state watermark for that owner), never on a timer: a device that was
 * offline for a month still learns of every delete."
 */
const HEARTBEAT = 300;

async function tombstones(d: TestDevice, ids: string[]): Promise<number> {
  const r = await sql<{
    n: number;
  }>`select count(*)::int as n from owned_tombstones where id = any(${ids}::uuid[])`.execute(d.db);
  return Number(r.rows[0].n);
}

/** Waits until none of these tombstones is left on the devices (fails saying how many are). */
async function waitCollected(what: string, devices: TestDevice[], ids: string[], timeoutMs = 10_000): Promise<void> {
  await waitFor(
    what,
    async () => {
      const left = await Promise.all(devices.map((d) => tombstones(d, ids)));
      if (left.some((n) => n > 0)) throw new Error(`tombstones left of ${ids.length}: ${left.join(', ')}`);
      return true;
    },
    timeoutMs,
  );
}

/** Waits until `d` has received n more heartbeats of `peer` (counted as changes of its lastSeenAt). */
async function waitHeartbeats(d: TestDevice, peer: string, n: number): Promise<void> {
  let last = peerIn(await statusOf(d), peer)?.lastSeenAt ?? null;
  let seen = 0;
  await waitFor(
    `${n} heartbeats of ${peer}`,
    async () => {
      const now = peerIn(await statusOf(d), peer)?.lastSeenAt ?? null;
      if (now !== last) {
        seen++;
        last = now;
      }
      return seen >= n;
    },
    n * HEARTBEAT * 4 + 5000,
    HEARTBEAT / 3,
  );
}

describe('tombstones collected by acknowledgement, never by time', () => {
  const newCluster = clusterPerTest();

  async function trio(
    cluster: Cluster,
  ): Promise<{ a: TestDevice; b: TestDevice; c: TestDevice; loc: string; ids: string[] }> {
    const a = await cluster.device('a', { heartbeatIntervalMs: HEARTBEAT });
    const b = await cluster.device('b', { heartbeatIntervalMs: HEARTBEAT });
    const c = await cluster.device('c', { heartbeatIntervalMs: HEARTBEAT });
    const loc = await createLocation(a, 'a');
    const ids = await createEntries(a, loc, 20, 'e');
    await waitConverged([a, b, c], { entries: 20 });
    return { a, b, c, loc, ids };
  }

  it('with every peer online, the tombstones of a delete are collected once all have acknowledged it', async () => {
    const cluster = await newCluster();
    const { a, b, c, ids } = await trio(cluster);
    const deleted = ids.slice(0, 5);
    for (const id of deleted) await must(a, 'DELETE', `/entries/${id}`);
    expect(await tombstones(a, deleted)).toBe(5);
    await waitConverged([a, b, c], { entries: 15 });
    for (const d of [b, c]) for (const id of deleted) expect((await d.req('GET', `/entries/${id}`)).status).toBe(404);
    // A's deletes are the last thing it wrote: B and C's watermarks of A (endOfVersion of that
    // write) vouch for every change up to and including it, so nothing needs to be kept
    await waitCollected('the tombstones to be collected on A, B and C', [a, b, c], deleted);
  });

  it('a message redelivered after its deletes were collected does not bring the rows back', async () => {
    const cluster = await newCluster();
    const { a, b, c, loc, ids } = await trio(cluster);
    // the location and its entries as A broadcast them (a late redelivery replays exactly this)
    const repo = new OwnedRepository();
    const rows = [
      { model: LOCATIONS.name, row: (await repo.find(a.db, LOCATIONS, loc))! },
      ...(await Promise.all(
        ids.map(async (id) => ({ model: ENTRIES.name, row: (await repo.find(a.db, ENTRIES, id))! })),
      )),
    ];
    const version = rows
      .map((r) => r.row.version)
      .sort()
      .pop()!;

    await must(a, 'DELETE', `/locations/${loc}`); // its entries go with it
    await waitConverged([a, b, c], { locations: 0, entries: 0 });
    await waitCollected('the tombstone of the location to be collected on A, B and C', [a, b, c], [loc]);

    const broker = await cluster.broker();
    const replay = {
      v: 1,
      kind: 'state',
      library: cluster.libraryId,
      origin: a.deviceId,
      from: null,
      to: endOfVersion(version),
      rows,
      tombstones: [],
    };
    // sealed with A's own keys (from its database): exactly what a redelivery of A's message is
    const asA = await LibraryTrust.load(a.db, cluster.libraryId, a.deviceId);
    const subject = broker.subjects.log('state', a.deviceId);
    await broker.nc
      .jetstream()
      .publish(subject, asA.seal(subject, Buffer.from(JSON.stringify(replay))).data, { msgID: randomUUID() });
    await waitFor(
      'B and C to take the replayed message',
      async () => (await broker.pending(b.deviceId)) === 0 && (await broker.pending(c.deviceId)) === 0,
      10_000,
    );
    for (const d of [b, c]) {
      expect((await d.req('GET', `/locations/${loc}`)).status).toBe(404);
      for (const id of ids.slice(0, 3)) expect((await d.req('GET', `/entries/${id}`)).status).toBe(404);
    }
    expect(await digestOf(b)).toEqual(await digestOf(a));
    expect(await digestOf(c)).toEqual(await digestOf(a));
  });

  it('a delete made while a peer is offline is kept until that peer comes back and learns of it', async () => {
    const cluster = await newCluster();
    const { a, b, c, loc, ids } = await trio(cluster);
    await cluster.close(c);

    const deleted = ids.slice(5, 8);
    for (const id of deleted) await must(a, 'DELETE', `/entries/${id}`);
    await createEntries(a, loc, 1, 'later'); // A writes on: B's watermark of A moves past the deletes
    await waitConverged([a, b], { entries: 18 });
    await waitFor(
      "A to know B's watermark is past the deletes",
      async () => {
        const wm = peerIn(await statusOf(b), a.deviceId)!.stateWatermark!;
        const row = await a.db
          .selectFrom('peer_watermarks')
          .select('state_watermark')
          .where('peer_id', '=', b.deviceId)
          .where('origin_id', '=', a.deviceId)
          .executeTakeFirst();
        return row?.state_watermark === wm;
      },
      10_000,
    );
    // many heartbeats (each one runs A's collection): still there, on A and on B
    await waitHeartbeats(a, b.deviceId, 10);
    expect(await tombstones(a, deleted)).toBe(3);
    expect(await tombstones(b, deleted)).toBe(3);
    expect(peerIn(await statusOf(a), c.deviceId)!.online).toBe(false);

    // C comes back (after "a month"): it learns of every delete, then the tombstones go
    const c2 = await cluster.restart(c);
    await waitConverged([a, b, c2], { entries: 18 });
    for (const id of deleted) expect((await c2.req('GET', `/entries/${id}`)).status).toBe(404);
    await waitCollected('the tombstones to be collected on A, B and C once C acknowledged', [a, b, c2], deleted);
  });
});
