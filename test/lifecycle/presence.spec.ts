import type { PeerStatus } from '@lib/sync';
import { CatchUpService } from '@lib/sync/peers/catch-up';
import { peerIn, statusOf, waitConverged, waitPhase } from '../support/api';
import { clusterPerTest } from '../support/cluster';
import { waitFor } from '../support/device-harness';
import { createEntries, createLocation, createTag } from '../support/fixtures';
import { freePort } from '../support/nats-server';

/**
 * Issue 4, "Presence": heartbeats every interval carry a device's watermarks; a peer that misses
 * three is marked offline (a stale connection is detected, not assumed alive); /sync/status shows
 * every peer's online state, last heartbeat, watermarks and what is pending for it; a peer coming
 * back triggers a watermark exchange and catch-up.
 */
const HEARTBEAT = 300;

describe('presence and heartbeats', () => {
  const newCluster = clusterPerTest();
  afterEach(() => jest.restoreAllMocks());

  /** Polls A's view of `peer` until it is `online`; returns that view and when it was first seen. */
  async function waitOnline(
    a: { req: any; url: string },
    peer: string,
    online: boolean,
    timeoutMs: number,
  ): Promise<{ view: PeerStatus; at: number }> {
    const view = (await waitFor(
      `${peer} to be ${online ? 'online' : 'offline'}`,
      async () => {
        const p = peerIn(await statusOf(a), peer);
        return p && p.online === online ? p : null;
      },
      timeoutMs,
      25,
    ))!;
    return { view, at: Date.now() };
  }

  it('a closed peer is marked offline after three missed heartbeats; back online it is caught up, and pendingToPeer follows', async () => {
    const catchUps = jest.spyOn(CatchUpService.prototype, 'catchUpFrom');
    const caughtUp = (by: string, from: string) =>
      catchUps.mock.calls.some(
        (call, i) =>
          call[0] === from && (catchUps.mock.contexts[i] as unknown as { self: { id: string } }).self.id === by,
      );

    const cluster = await newCluster();
    const a = await cluster.device('a', { heartbeatIntervalMs: HEARTBEAT });
    let b = await cluster.device('b', { heartbeatIntervalMs: HEARTBEAT });
    const locA = await createLocation(a, 'a');
    await createEntries(a, locA, 20, 'a');
    await createTag(a, 'a-tag');
    await createEntries(b, await createLocation(b, 'b'), 10, 'b');
    await createTag(b, 'b-tag');
    await waitConverged([a, b], { entries: 30, tags: 2 });

    // online, with a recent heartbeat, both watermarks, and nothing pending once acknowledged
    const seen = (await waitFor(
      "A's full view of B",
      async () => {
        const p = peerIn(await statusOf(a), b.deviceId);
        return p && p.online && p.lastSeenAt && p.stateWatermark && p.sharedWatermark && p.pendingToPeer === 0
          ? p
          : null;
      },
      10_000,
    ))!;
    expect(seen.deviceName).toBe('b');
    expect(Date.now() - Date.parse(seen.lastSeenAt!)).toBeLessThan(5 * HEARTBEAT + 1000);
    expect(seen.stateWatermark).toMatch(new RegExp(`^\\d{15}-\\d{6}-${b.deviceId}\\|`)); // B's own stream, by B's clock
    expect(seen.sharedWatermark).toMatch(new RegExp(`^\\d{15}-\\d{6}-${b.deviceId}$`));
    // heartbeats keep coming: lastSeenAt moves
    await waitFor(
      'a later heartbeat of B',
      async () => peerIn(await statusOf(a), b.deviceId)!.lastSeenAt! > seen.lastSeenAt!,
      5 * HEARTBEAT,
    );
    const { view: ofA } = await waitOnline(b, a.deviceId, true, 10 * HEARTBEAT + 2000);
    expect(ofA).toMatchObject({ deviceName: 'a', online: true });
    expect(ofA.stateWatermark).not.toBeNull();
    expect(ofA.sharedWatermark).not.toBeNull();

    // B goes away without a word: offline once three heartbeats are missed, not before
    await cluster.close(b);
    const t0 = Date.now();
    const { view: gone, at } = await waitOnline(a, b.deviceId, false, 10 * HEARTBEAT + 2000);
    expect(at - t0).toBeLessThan(8 * HEARTBEAT + 1000); // a few intervals
    expect(at - Date.parse(gone.lastSeenAt!)).toBeGreaterThanOrEqual(3 * HEARTBEAT); // three missed
    expect(gone.stateWatermark).toBe(seen.stateWatermark); // what we hold of B stays known

    // pending for the offline peer: what A writes meanwhile
    const writing = Date.now();
    await createEntries(a, locA, 25, 'while-away');
    await createTag(a, 'while-away');
    const pending = await waitFor(
      'pending for B',
      async () => peerIn(await statusOf(a), b.deviceId)!.pendingToPeer,
      5000,
    );
    expect(pending).toBe(26); // 25 entries and one shared change, none acknowledged by B
    expect(peerIn(await statusOf(a), b.deviceId)!.online).toBe(false);
    // its lag: the age of the oldest of them
    const lag = await waitFor(
      'a lag for B',
      async () => {
        const l = peerIn(await statusOf(a), b.deviceId)!.lagMs;
        return l >= 100 ? l : null;
      },
      5000,
    );
    expect(lag).toBeLessThanOrEqual(Date.now() - writing + 50);

    // B is back: online again, a watermark exchange and catch-up, and nothing pending any more
    catchUps.mockClear();
    b = await cluster.restart(b);
    await waitOnline(a, b.deviceId, true, 10 * HEARTBEAT + 2000);
    await waitFor('A to exchange watermarks and catch up with B', async () => caughtUp(a.deviceId, b.deviceId), 10_000);
    await waitConverged([a, b], { entries: 55, tags: 3 });
    await waitFor(
      'nothing pending for B',
      async () => peerIn(await statusOf(a), b.deviceId)!.pendingToPeer === 0,
      10_000,
    );
    expect(peerIn(await statusOf(a), b.deviceId)!.lagMs).toBe(0);
    await waitOnline(b, a.deviceId, true, 10 * HEARTBEAT + 2000);
  });

  it('a frozen peer (connection open, no heartbeats) is detected as offline, and comes back', async () => {
    const cluster = await newCluster();
    const a = await cluster.device('a', { heartbeatIntervalMs: HEARTBEAT });
    const b = await cluster.process('b', { SYNC_HEARTBEAT_INTERVAL_MS: String(HEARTBEAT) });
    await b.start(await freePort());
    await waitPhase(b);
    const loc = await createLocation(a, 'a');
    await createEntries(a, loc, 10, 'a');
    await waitConverged([a, b], { entries: 10 });
    await waitOnline(a, b.deviceId, true, 5000);
    // B acknowledges what it applied a little later: freeze it only once A has the acknowledgement,
    // so that what is pending for it below is exactly what A writes meanwhile
    await waitFor(
      'B to acknowledge the first entries',
      async () => peerIn(await statusOf(a), b.deviceId)!.pendingToPeer === 0,
      10_000,
    );

    b.proc!.kill('SIGSTOP'); // its TCP connection to NATS stays open, it just says nothing
    try {
      const t0 = Date.now();
      const { view } = await waitOnline(a, b.deviceId, false, 10 * HEARTBEAT + 2000);
      expect(Date.now() - t0).toBeLessThan(8 * HEARTBEAT + 1000);
      expect(Date.now() - Date.parse(view.lastSeenAt!)).toBeGreaterThanOrEqual(3 * HEARTBEAT);
      await createEntries(a, loc, 15, 'while-frozen');
      await waitFor(
        'pending for the frozen peer',
        async () => peerIn(await statusOf(a), b.deviceId)!.pendingToPeer === 15,
        5000,
      );
    } finally {
      b.proc!.kill('SIGCONT');
    }
    await waitOnline(a, b.deviceId, true, 10 * HEARTBEAT + 2000);
    await waitConverged([a, b], { entries: 25 });
    await waitFor(
      'nothing pending for B',
      async () => peerIn(await statusOf(a), b.deviceId)!.pendingToPeer === 0,
      10_000,
    );
    await waitPhase(b, 'ready', 15_000);
  });
});
