import { randomUUID } from 'node:crypto';
import { must, waitConverged } from '../support/api';
import { Cluster } from '../support/cluster';
import { LONG, waitFor } from '../support/device-harness';
import { createEntries, createVolumeAndLocation } from '../support/fixtures';
import { durableName, streamName } from '../support/wire';
import { expectAcknowledgedWrites, startWriter } from '../support/writers';

/**
 * Devices and the broker failing: a peer that was down while others wrote, and the nats-server
 * killed (and its storage lost) in the middle of a stream of writes. Nothing acknowledged by the
 * API may be lost.
 */
describe('failures', () => {
  let cluster: Cluster;

  afterEach(async () => {
    await cluster?.dispose();
  });

  it('a device that was down while its peer wrote catches up when it returns', async () => {
    cluster = await new Cluster().start();
    const [a, b0] = await cluster.startDevices(['a', 'b']);
    const { locationId } = await createVolumeAndLocation(a, 'a');
    const before = await createEntries(a, locationId, 10);
    const tag = await must(a, 'POST', '/tags', { name: 'before', color: 'red' });
    await waitConverged([a, b0], { entries: 10, tags: 1 });

    await b0.close();
    const entries = await createEntries(a, locationId, 1000, 'f', 10);
    const tags = [];
    for (let i = 0; i < 5; i++) tags.push(await must(a, 'POST', '/tags', { name: `while b was away ${i}` }));
    await must(a, 'PATCH', `/tags/${tag.id}`, { color: 'blue' });
    await must(a, 'PUT', `/entries/${entries[0]}/metadata`, { favorite: true, notes: 'noted while b was away' });
    await must(a, 'PUT', `/tags/${tags[0].id}/entries/${entries[1]}`);
    await must(a, 'PATCH', `/entries/${before[0]}`, { name: 'renamed while b was away.jpg' });
    expect((await a.req('DELETE', `/entries/${before[1]}`)).status).toBe(204);
    expect((await a.req('DELETE', `/tags/${tags[4].id}`)).status).toBe(204);

    // the same database and the same DEVICE_ID: its durable consumer kept what it missed
    const b = await cluster.restart(b0);
    expect(b.deviceId).toBe(b0.deviceId);
    await waitConverged([a, b], { entries: 1009, tags: 5, user_metadata: 1, tag_entries: 1 });
    expect((await b.req('GET', `/tags/${tag.id}`)).body.color).toBe('blue');
    expect((await b.req('GET', `/entries/${entries[0]}/metadata`)).body).toMatchObject({
      favorite: true,
      notes: 'noted while b was away',
    });
    expect((await b.list(`/tags/${tags[0].id}/entries`)).map((e) => e.id)).toEqual([entries[1]]);
    expect((await b.req('GET', `/entries/${before[0]}`)).body.name).toBe('renamed while b was away.jpg');
    expect((await b.req('GET', `/entries/${before[1]}`)).status).toBe(404);
    expect((await b.req('GET', `/tags/${tags[4].id}`)).status).toBe(404);
    expect((await b.req('GET', `/entries/${entries[999]}`)).body).toEqual(
      (await a.req('GET', `/entries/${entries[999]}`)).body,
    );

    // and it is live again
    const after = await must(b, 'POST', '/tags', { name: 'b is back' });
    await waitFor('a tag of B to reach A', async () => (await a.req('GET', `/tags/${after.id}`)).status === 200, LONG);
  });

  it('the nats-server killed and restarted in the middle of a stream of writes: every acknowledged write reaches the peer', async () => {
    cluster = await new Cluster().start();
    const [a, b] = await cluster.startDevices(['a', 'b']);
    const { locationId } = await createVolumeAndLocation(a, 'a');
    const lb = await createVolumeAndLocation(b, 'b');
    const wa = startWriter(a, locationId, { label: 'a', batch: 100 });
    const wb = startWriter(b, lb.locationId, { label: 'b', batch: 20 });
    try {
      await wa.progress(5);
      await cluster.nats.stop(); // SIGKILL
      await wa.progress(5); // the API keeps acknowledging writes while the broker is gone
      await wb.progress(2);
      await cluster.nats.start(); // same port, same storage
      await wa.progress(5);
      await cluster.nats.stop();
      await wa.progress(3);
      await cluster.nats.start();
      await wa.progress(5);
      await wb.progress(2);
    } finally {
      await wa.stop();
      await wb.stop();
    }
    expect(wa.stats.batches).toBeGreaterThanOrEqual(23);
    const entries = wa.stats.entries.length + wb.stats.entries.length;
    await waitConverged([a, b], { entries, tags: wa.stats.tags.length + wb.stats.tags.length, locations: 2 });
    for (const d of [a, b]) {
      await expectAcknowledgedWrites(d, wa.stats);
      await expectAcknowledgedWrites(d, wb.stats);
    }
  });

  it('the broker losing its storage (stream and consumers gone) loses no data', async () => {
    cluster = await new Cluster().start();
    const [a, b] = await cluster.startDevices(['a', 'b']);
    const { locationId } = await createVolumeAndLocation(a, 'a');
    await createEntries(a, locationId, 200);
    const tag = await must(b, 'POST', '/tags', { name: 'before the wipe' });
    await waitConverged([a, b], { entries: 200, tags: 1 });

    await cluster.nats.stop();
    cluster.nats.wipe();
    // writes while the broker is down, on both sides
    const whileDown = await createEntries(a, locationId, 300, 'f', 200);
    await must(b, 'PATCH', `/tags/${tag.id}`, { color: 'written while the broker was down' });
    await cluster.nats.start();
    // and writes after it came back empty
    const afterWipe = await createEntries(a, locationId, 100, 'f', 500);
    const tag2 = await must(b, 'POST', '/tags', { id: randomUUID(), name: 'after the wipe' });

    await waitConverged([a, b], { entries: 600, tags: 2 });
    expect((await b.req('GET', `/entries/${whileDown[299]}`)).status).toBe(200);
    expect((await b.req('GET', `/entries/${afterWipe[99]}`)).status).toBe(200);
    expect((await a.req('GET', `/tags/${tag.id}`)).body.color).toBe('written while the broker was down');
    expect((await a.req('GET', `/tags/${tag2.id}`)).body.name).toBe('after the wipe');
  });

  it('a durable consumer or the whole stream deleted under running devices is recreated, and nothing is lost', async () => {
    cluster = await new Cluster().start();
    const [a, b] = await cluster.startDevices(['a', 'b']);
    const raw = await cluster.broker();
    const jsm = await raw.nc.jetstreamManager();
    const { locationId } = await createVolumeAndLocation(a, 'a');
    await createEntries(a, locationId, 100);
    await waitConverged([a, b], { entries: 100 });

    // B's queue disappears; A goes on writing
    await jsm.consumers.delete(streamName(cluster.libraryId), durableName(b.deviceId));
    await createEntries(a, locationId, 100, 'f', 100);
    const tag = await must(a, 'POST', '/tags', { name: 'while the consumer was gone' });
    await waitConverged([a, b], { entries: 200, tags: 1 });
    await waitFor(
      "B's consumer to be recreated",
      async () => !!(await jsm.consumers.info(streamName(cluster.libraryId), durableName(b.deviceId))),
      LONG,
    );

    // the whole stream disappears; both sides write
    await jsm.streams.delete(streamName(cluster.libraryId));
    await createEntries(a, locationId, 100, 'f', 200);
    await must(b, 'PATCH', `/tags/${tag.id}`, { color: 'after the stream was deleted' });
    await waitConverged([a, b], { entries: 300, tags: 1 });
    expect((await a.req('GET', `/tags/${tag.id}`)).body.color).toBe('after the stream was deleted');
    await waitFor(
      'the stream to be recreated',
      async () => !!(await jsm.streams.info(streamName(cluster.libraryId))),
      LONG,
    );
  });
});
