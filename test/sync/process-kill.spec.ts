import { randomUUID } from 'node:crypto';
import { digestOf, must, waitConverged } from '../support/api';
import { Cluster, startProcess } from '../support/cluster';
import { LONG, waitFor } from '../support/device-harness';
import { createEntries, createVolumeAndLocation, entryInput } from '../support/fixtures';
import { freePort } from '../support/nats-server';
import { expectAcknowledgedWrites, startWriter } from '../support/writers';

/**
 * Real device processes (node dist/main.js, as docs/http.md starts them) killed with SIGKILL while
 * writes stream in: whatever the API acknowledged exists on every device afterwards. Needs
 * `npm run build`.
 */
describe('device processes', () => {
  let cluster: Cluster;

  afterEach(async () => {
    await cluster?.dispose();
  });

  it('a device killed (or stopped) in the middle of a stream of writes and restarted loses nothing, on either side', async () => {
    cluster = await new Cluster().start();
    const pa = await cluster.process('a');
    const pb = await cluster.process('b');
    const [portA, portB] = [await freePort(), await freePort()];
    await Promise.all([startProcess(pa, portA), startProcess(pb, portB)]);
    const la = await createVolumeAndLocation(pa, 'a');
    const lb = await createVolumeAndLocation(pb, 'b');

    const wa = startWriter(pa, la.locationId, { label: 'a', batch: 100 });
    const wb = startWriter(pb, lb.locationId, { label: 'b', batch: 20 });
    try {
      await Promise.all([wa.progress(5), wb.progress(3)]);
      // B dies while it applies A's stream and writes its own
      expect(await pb.stop('SIGKILL')).toBe('SIGKILL');
      await wa.progress(5);
      await startProcess(pb, pb.port);
      await Promise.all([wa.progress(3), wb.progress(3)]);
      // A dies while it writes
      expect(await pa.stop('SIGKILL')).toBe('SIGKILL');
      await wb.progress(3);
      await startProcess(pa, pa.port);
      await Promise.all([wa.progress(3), wb.progress(2)]);
      // and a graceful stop in the middle of it all: exit 0, then back
      expect(await pb.stop('SIGTERM')).toBe(0);
      await wa.progress(3);
      await startProcess(pb, pb.port);
      await Promise.all([wa.progress(2), wb.progress(2)]);
    } finally {
      await wa.stop();
      await wb.stop();
    }
    expect(wa.stats.failures).toBeGreaterThan(0); // the kills did interrupt the writers

    // acknowledged, then killed at once: what was committed but not yet sent goes out after the restart
    const lastTag = await must(pb, 'POST', '/tags', { id: randomUUID(), name: 'acknowledged just before the kill' });
    const lastEntries = await createEntries(pb, lb.locationId, 50, 'f', 10_000);
    expect(await pb.stop('SIGKILL')).toBe('SIGKILL');
    await startProcess(pb, pb.port);

    await waitConverged([pa, pb]);
    for (const p of [pa, pb]) {
      await expectAcknowledgedWrites(p, wa.stats);
      await expectAcknowledgedWrites(p, wb.stats);
    }
    expect((await pa.req('GET', `/tags/${lastTag.id}`)).status).toBe(200);
    expect((await pa.req('GET', `/entries/${lastEntries[49]}`)).status).toBe(200);

    // both keep syncing
    const after = await must(pa, 'POST', '/tags', { name: 'after the kills' });
    await waitFor(
      'a write after the kills to reach B',
      async () => (await pb.req('GET', `/tags/${after.id}`)).status === 200,
      LONG,
    );
  });

  it('a device asked for more than fits in one reply (a server with a small max_payload) keeps running and serves the peer', async () => {
    cluster = await new Cluster({ natsSettings: 'max_payload: 32768' }).start();
    const pa = await cluster.process('a');
    const pb = await cluster.process('b');
    await startProcess(pa, await freePort());
    const { locationId } = await createVolumeAndLocation(pa, 'a');
    const items = Array.from({ length: 300 }, (_, i) => ({
      ...entryInput(locationId, i),
      path: `/mnt/a/${'deep/'.repeat(300)}file-${i}.jpg`,
    }));
    await must(pa, 'POST', '/entries/batch', { items });

    // B joins and pulls A's rows from A: every reply must fit the server's limit
    await pb.start(await freePort());
    const outcome = await waitFor(
      'B to converge with A (or A to die)',
      async () => {
        if (pa.proc && (pa.proc.exitCode !== null || pa.proc.signalCode !== null))
          return `A exited with ${pa.proc.exitCode ?? pa.proc.signalCode}: ${pa.logTail(8)}`;
        const [da, db] = await Promise.all([digestOf(pa), digestOf(pb)]);
        if (JSON.stringify(da) !== JSON.stringify(db))
          throw new Error(`entries: A ${da.entries.count}, B ${db.entries.count}`);
        return 'converged';
      },
      LONG,
    );
    expect(outcome).toBe('converged');
    expect(await digestOf(pb)).toMatchObject({ entries: { count: 300 } });
  });
});
