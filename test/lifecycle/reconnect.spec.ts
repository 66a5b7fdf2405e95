import { must, peerIn, statusOf, waitConverged, waitPhase } from '../support/api';
import { clusterPerTest } from '../support/cluster';
import { countRows } from '../support/db-queries';
import { LONG, waitFor } from '../support/device-harness';
import { createEntries, createLocation, createTag } from '../support/fixtures';
import { deadNatsUrl } from '../support/nats-server';

/**
 * Issue 4, "Reconnect": a device that was away for a long time, with writes on both sides, comes
 * back and catches up by watermarks (its durable consumer having been lost meanwhile), and two
 * devices cut off from NATS both write and converge once the broker is back.
 */
describe('reconnect after a long offline period', () => {
  const newCluster = clusterPerTest();

  it('B, away with its consumer deleted, writes offline and both sides converge through watermarks', async () => {
    const cluster = await newCluster();
    const broker = await cluster.broker();
    const a = await cluster.device('a', { heartbeatIntervalMs: 400 });
    let b = await cluster.device('b', { heartbeatIntervalMs: 400 });
    const locA = await createLocation(a, 'a');
    const firstA = await createEntries(a, locA, 200, 'a1');
    const tag = await createTag(a, 'shared-tag', 'red');
    await must(a, 'PUT', `/entries/${firstA[0]}/metadata`, { favorite: false, notes: 'original' });
    const base = { entries: 200, locations: 1, tags: 1, user_metadata: 1 };
    await waitConverged([a, b], base);

    // B goes away; A notices and keeps working
    await cluster.close(b);
    await waitFor('A to see B offline', async () => peerIn(await statusOf(a), b.deviceId)?.online === false, 10_000);
    await createEntries(a, locA, 300, 'a2');
    await must(a, 'DELETE', `/entries/${firstA[1]}`);
    await must(a, 'PATCH', `/entries/${firstA[2]}`, { name: 'renamed-by-a.txt' });
    await must(a, 'PATCH', `/tags/${tag}`, { name: 'renamed-by-a' });
    await must(a, 'PUT', `/entries/${firstA[0]}/metadata`, { notes: 'by a, earlier' });
    const tagA2 = await createTag(a, 'a-while-b-away');
    // meanwhile B's queue is lost: what A published while B was away is no longer waiting for it
    expect(await broker.deleteConsumer(b.deviceId)).toBe(true);

    // B works without NATS (unreachable broker): its writes stay in its database
    b = await cluster.restart(b, { natsUrl: await deadNatsUrl(), wait: false });
    const locB = await createLocation(b, 'b');
    await createEntries(b, locB, 150, 'b');
    await must(b, 'PATCH', `/tags/${tag}`, { color: 'green' }); // another field of the same tag: both survive
    await must(b, 'PUT', `/entries/${firstA[0]}/metadata`, { notes: 'by b, later' }); // same field, later: wins
    const tagB = await createTag(b, 'b-offline');
    expect((await statusOf(b)).natsConnected).toBe(false);

    // B comes back to the real broker: its consumer is recreated, watermarks reconcile both ways
    b = await cluster.restart(b, { wait: false });
    await broker.waitConsumer(b.deviceId);
    await waitConverged([a, b], { entries: 200 + 300 - 1 + 150, locations: 2, tags: 3, user_metadata: 1 });
    for (const d of [a, b]) {
      expect(await must(d, 'GET', `/tags/${tag}`)).toMatchObject({ name: 'renamed-by-a', color: 'green' });
      expect(await must(d, 'GET', `/entries/${firstA[0]}/metadata`)).toMatchObject({
        notes: 'by b, later',
        favorite: false,
      });
      expect(await must(d, 'GET', `/entries/${firstA[2]}`)).toMatchObject({ name: 'renamed-by-a.txt' });
      expect((await d.req('GET', `/entries/${firstA[1]}`)).status).toBe(404);
      expect((await d.req('GET', `/tags/${tagA2}`)).status).toBe(200);
      expect((await d.req('GET', `/tags/${tagB}`)).status).toBe(200);
    }
    await waitPhase(b, 'ready', 15_000);

    // and the live path works again in both directions
    await createEntries(a, locA, 5, 'a3');
    await createEntries(b, locB, 5, 'b2');
    await waitConverged([a, b], { entries: 200 + 300 - 1 + 150 + 10 });
  });

  it('a device back with its consumer lost says ready only once it has caught up', async () => {
    const cluster = await newCluster();
    const broker = await cluster.broker();
    const a = await cluster.device('a', { heartbeatIntervalMs: 400 });
    let b = await cluster.device('b', { heartbeatIntervalMs: 400 });
    const loc = await createLocation(a, 'a');
    await createEntries(a, loc, 10, 'before');
    await waitConverged([a, b], { entries: 10 });
    await cluster.close(b);
    await createEntries(a, loc, 200, 'while-away');
    await createTag(a, 'while-away');
    expect(await broker.deleteConsumer(b.deviceId)).toBe(true);

    b = await cluster.restart(b, { wait: false });
    // "ready" (docs/http.md phases): the queue is drained and the device holds what its peers hold; with
    // the queue lost, that is once the watermark reconciliation has brought in what it lacked
    const atReady = await waitFor(
      'B to say ready',
      async () => {
        if ((await statusOf(b)).phase !== 'ready') return null;
        return { entries: await countRows(b, 'entries'), tags: await countRows(b, 'tags') };
      },
      LONG,
      20,
    );
    expect(atReady).toEqual({ entries: 210, tags: 1 });
  });

  it('both sides write while NATS is down and converge once it is back', async () => {
    const cluster = await newCluster();
    const a = await cluster.device('a', { heartbeatIntervalMs: 400 });
    const b = await cluster.device('b', { heartbeatIntervalMs: 400 });
    const locA = await createLocation(a, 'a');
    const idsA = await createEntries(a, locA, 100, 'a');
    const tag = await createTag(a, 't', 'red');
    await waitConverged([a, b], { entries: 100, tags: 1 });

    await cluster.nats.stop();
    for (const d of [a, b])
      await waitFor('NATS to be seen down', async () => (await statusOf(d)).natsConnected === false, 15_000);
    const locB = await createLocation(b, 'b');
    await createEntries(a, locA, 200, 'a-down');
    await createEntries(b, locB, 250, 'b-down');
    await must(a, 'DELETE', `/entries/${idsA[0]}`);
    await must(a, 'PATCH', `/tags/${tag}`, { name: 'a-name' });
    await must(b, 'PATCH', `/tags/${tag}`, { color: 'blue' });
    await must(b, 'PUT', `/entries/${idsA[1]}/metadata`, { hidden: true });
    await must(a, 'PUT', `/entries/${idsA[1]}/metadata`, { favorite: true });
    await createTag(b, 'b-tag');

    await cluster.nats.start(); // same port, same store
    const digest = await waitConverged(
      [a, b],
      { entries: 100 + 200 + 250 - 1, locations: 2, tags: 2, user_metadata: 1 },
      LONG,
    );
    expect(digest.entries.count).toBe(549);
    for (const d of [a, b]) {
      expect(await must(d, 'GET', `/tags/${tag}`)).toMatchObject({ name: 'a-name', color: 'blue' });
      expect(await must(d, 'GET', `/entries/${idsA[1]}/metadata`)).toMatchObject({ hidden: true, favorite: true });
      await waitPhase(d, 'ready', 15_000);
    }
  });
});
