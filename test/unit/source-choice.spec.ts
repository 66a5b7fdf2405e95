import { backfillFromBestPeer } from '@lib/sync/backfill/source-choice';
import type { BackfillService } from '@lib/sync/backfill/backfill';
import type { WatermarksReply } from '@lib/sync/rpc/protocol';

const peer: WatermarksReply = {
  deviceId: '00000000-0000-4000-8000-00000000000b',
  name: 'b',
  phase: 'ready',
  ownedHead: null,
  sharedHead: null,
  sharedPrunedUpTo: null,
  state: {},
  shared: {},
  rows: 10,
  counts: {},
};

function fakeBackfill() {
  const calls: string[] = [];
  const backfill = {
    hasStarted: async () => false,
    finishEmpty: async () => void calls.push('finishEmpty'),
    runFrom: async (p: WatermarksReply) => void calls.push(`runFrom ${p.name}`),
  } as unknown as BackfillService;
  return { backfill, calls };
}

/**
 * Found by chaos seed 4003: a device joining a library of five devices heard their heartbeats, but
 * none answered its first discovery in time (a loaded machine), so it declared itself the library's
 * first device; its data then came through catch-up and anti-entropy instead of a backfill.
 */
describe('choosing the backfill source', () => {
  it('with no peer answering and none known, this is the first device', async () => {
    const { backfill, calls } = fakeBackfill();
    await backfillFromBestPeer(
      backfill,
      async () => [],
      new AbortController().signal,
      async () => false,
    );
    expect(calls).toEqual(['finishEmpty']);
  });

  it('with peers known but silent, asks again and backfills from the first that answers', async () => {
    const { backfill, calls } = fakeBackfill();
    let asked = 0;
    const discover = async () => (++asked < 3 ? [] : [peer]);
    await backfillFromBestPeer(backfill, discover, new AbortController().signal, async () => true);
    expect(asked).toBe(3);
    expect(calls).toEqual(['runFrom b']);
  });

  it('with peers known but silent past the grace period, starts alone', async () => {
    const { backfill, calls } = fakeBackfill();
    await backfillFromBestPeer(
      backfill,
      async () => [],
      new AbortController().signal,
      async () => true,
      300,
    );
    expect(calls).toEqual(['finishEmpty']);
  });
});
