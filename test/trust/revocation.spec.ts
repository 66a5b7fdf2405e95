import { connect } from 'nats';
import { LibraryTrust } from '@lib/sync';
import { must, statusOf, waitConverged, waitPhase } from '../support/api';
import { Cluster } from '../support/cluster';
import { deadLetters } from '../support/db-queries';
import { LONG, waitFor } from '../support/device-harness';
import { logSubject, sharedMessage, stamp, streamName } from '../support/wire';

/**
 * Removing a member (docs/design.md "Trust"): its messages are refused everywhere, the library key
 * moves to a new epoch sealed to each remaining member, so the removed device cannot open what is
 * written afterwards; a member offline during the rotation gets the new epoch when it returns.
 */
describe('removing a member', () => {
  let cluster: Cluster;
  afterEach(async () => {
    await cluster?.dispose();
  });

  it('locks the removed device out of what is written afterwards, and an offline member gets the new epoch', async () => {
    cluster = await new Cluster({ heartbeatIntervalMs: 500 }).start();
    const lib = cluster.libraryId;
    const [a, b, c, d] = await cluster.startDevices(['a', 'b', 'c', 'd']);
    await must(a, 'POST', '/tags', { name: 'before' });
    await waitConverged([a, b, c, d], { tags: 1 });
    for (const x of [a, b, c, d]) expect((await statusOf(x)).keyEpoch).toBe(0);
    expect((await statusOf(a)).peers.find((p) => p.deviceId === c.deviceId)?.fingerprint).toBe(
      (await statusOf(c)).fingerprint,
    );

    // d goes offline; c is removed meanwhile
    await cluster.close(d);
    expect((await a.req('DELETE', `/sync/peers/${c.deviceId}`)).status).toBe(204);
    await waitPhase(c, 'removed');
    await waitFor('b to take the new epoch', async () => (await statusOf(b)).keyEpoch === 1);
    expect((await statusOf(a)).keyEpoch).toBe(1);

    // written afterwards: b gets it, c cannot even open it
    const after = await must(a, 'POST', '/tags', { name: 'after the removal' });
    await waitFor('b to have it', async () => (await b.req('GET', `/tags/${after.id}`)).status === 200, LONG);
    expect((await c.req('GET', `/tags/${after.id}`)).status).toBe(404);
    const cKeys = await LibraryTrust.load(c.db, lib, c.deviceId);
    const nc = await connect({ servers: cluster.natsUrl });
    cluster.onDispose(() => nc.close());
    const subject = logSubject(lib, 'shared', a.deviceId);
    const stored = await (await nc.jetstreamManager()).streams.getMessage(streamName(lib), { last_by_subj: subject });
    expect(() => cKeys.open(subject, stored.data)).toThrow(/unknown_epoch/);

    // what c writes afterwards reaches nobody: its own API (sync stopped) and its keys on the wire
    const local = await must(c, 'POST', '/tags', { name: 'written by the removed device' });
    const cSubject = logSubject(lib, 'shared', c.deviceId);
    const forged = sharedMessage(lib, c.deviceId, [
      {
        hlc: stamp(Date.now(), 0, c.deviceId),
        model: 'tags',
        record_key: after.id,
        op: 'set',
        fields: { name: 'c was here' },
      },
    ]);
    await nc.jetstream().publish(cSubject, cKeys.seal(cSubject, Buffer.from(JSON.stringify(forged))).data);
    for (const x of [a, b]) {
      const letter = await waitFor(`${x.config.deviceName} to refuse c`, async () =>
        (await deadLetters(x.db)).find((l) => l.subject === cSubject),
      );
      expect(letter!.reason).toMatch(/removed_signer/);
      expect((await x.req('GET', `/tags/${local.id}`)).status).toBe(404);
      expect((await x.req('GET', `/tags/${after.id}`)).body.name).toBe('after the removal');
    }
    // c stays removed across a restart, its local data readable
    const c2 = await cluster.restart(c, { wait: false });
    await waitPhase(c2, 'removed');
    expect((await c2.req('GET', `/tags/${local.id}`)).status).toBe(200);

    // d returns: it takes the rotation from its queue, then everything written meanwhile
    const d2 = await cluster.restart(d);
    await waitFor(
      'd to have the tag written while it was away',
      async () => (await d2.req('GET', `/tags/${after.id}`)).status === 200,
    );
    expect((await statusOf(d2)).keyEpoch).toBe(1);
    const fromD = await must(d2, 'POST', '/tags', { name: 'from d, under the new epoch' });
    await waitFor('a and b to have it', async () => {
      for (const x of [a, b]) if ((await x.req('GET', `/tags/${fromD.id}`)).status !== 200) return false;
      return true;
    });
    expect((await c2.req('GET', `/tags/${fromD.id}`)).status).toBe(404);
  });
});
