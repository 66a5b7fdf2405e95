import { SharedWriter, SyncEngine, TAGS } from '@lib/sync';
import { must, statusOf, waitConverged } from '../support/api';
import { Cluster } from '../support/cluster';
import type { TestDevice } from '../support/device-harness';
import { LONG, waitFor } from '../support/device-harness';
import { parallel } from '../support/writers';

/**
 * The shared change log is pruned once every active device has acknowledged it: with every peer
 * online it stays small; a known device that is offline holds pruning back until it returns.
 */
describe('change-log pruning', () => {
  let cluster: Cluster;

  afterEach(async () => {
    await cluster?.dispose();
  });

  /**
   * n shared writes on d, spread over the tags: each one its own change-log row with its own
   * stamp. Most go through the SharedWriter in transactions of 100 (thousands of single-write
   * commits would measure the disk's fsync, not the sync), the last 50 through the API.
   */
  async function patchTags(d: TestDevice, tagIds: string[], n: number, label: string): Promise<void> {
    const fields = (i: number) => (i % 2 ? { name: `${label} ${i}` } : { color: `${label}-${i}` });
    const viaApi = Math.min(50, n);
    for (let start = 0; start < n - viaApi; start += 100) {
      await d.app.get(SharedWriter).transact(async (w) => {
        for (let i = start; i < Math.min(start + 100, n - viaApi); i++)
          await w.set(TAGS, { id: tagIds[i % tagIds.length] }, fields(i));
      });
    }
    await parallel(
      Array.from({ length: viaApi }, (_, k) => n - viaApi + k),
      4,
      (i) => must(d, 'PATCH', `/tags/${tagIds[i % tagIds.length]}`, fields(i)),
    );
  }

  async function ackedShared(of: TestDevice, peer: TestDevice): Promise<string | null> {
    const row = await of.db
      .selectFrom('devices')
      .select('acked_shared')
      .where('id', '=', peer.deviceId)
      .executeTakeFirst();
    return row?.acked_shared ?? null;
  }

  /** The stamp of the newest tag change (only A writes tags here, so: A's newest change). */
  async function newestChange(d: TestDevice): Promise<string> {
    const row = await d.db
      .selectFrom('tags')
      .select('updated_hlc')
      .orderBy('updated_hlc', 'desc')
      .limit(1)
      .executeTakeFirstOrThrow();
    return row.updated_hlc;
  }

  it('with every device online, 3,000 shared writes leave a log under 1,000 rows and the data converges', async () => {
    cluster = await new Cluster().start();
    const [a, b, c] = await cluster.startDevices(['a', 'b', 'c']);
    const tags: string[] = [];
    for (let i = 0; i < 10; i++) tags.push((await must(a, 'POST', '/tags', { name: `tag ${i}` })).id);

    await patchTags(a, tags, 3000, 'a');
    // every write is its own change (a few may already be pruned)
    const changes = await a.db
      .selectFrom('shared_changes')
      .select((eb) => eb.fn.countAll<string>().as('n'))
      .executeTakeFirstOrThrow();
    expect(
      Number(changes.n) + Number((await a.app.get(SyncEngine).metrics.pruned.get()).values[0]?.value ?? 0),
    ).toBeGreaterThanOrEqual(3000);

    await waitFor(
      "A's log to be pruned under 1,000 rows",
      async () => {
        const s = await statusOf(a);
        if (s.sharedLogSize >= 1000) throw new Error(`sharedLogSize ${s.sharedLogSize}`);
        return true;
      },
      LONG,
    );
    await waitConverged([a, b, c], { tags: 10 });
    const expected = await a.list('/tags');
    for (const d of [b, c]) expect(await d.list('/tags')).toEqual(expected);
    // once everything is acknowledged, nothing needs keeping
    await waitFor('every change acknowledged and pruned', async () => (await statusOf(a)).sharedLogSize === 0, LONG);
    for (const d of [b, c]) expect((await statusOf(d)).sharedLogSize).toBe(0);
  });

  it('a known device that is offline holds pruning back; when it returns it catches up and the log is pruned', async () => {
    cluster = await new Cluster().start();
    const [a, b, c0] = await cluster.startDevices(['a', 'b', 'c']);
    const tags: string[] = [];
    for (let i = 0; i < 5; i++) tags.push((await must(a, 'POST', '/tags', { name: `tag ${i}` })).id);
    await waitConverged([a, b, c0], { tags: 5 });
    // C is known to A: it has been seen and has acknowledged A's changes
    const head = await newestChange(a);
    await waitFor('C to acknowledge A', async () => ((await ackedShared(a, c0)) ?? '') >= head, LONG);
    expect((await statusOf(a)).peers.find((p) => p.deviceId === c0.deviceId)?.lastSeenAt).toEqual(expect.any(String));
    const cAck = (await ackedShared(a, c0))!;

    await c0.close();
    await patchTags(a, tags, 300, 'while c is away');
    const newest = await newestChange(a);
    await waitConverged([a, b], { tags: 5 });
    await waitFor('B to acknowledge all of it', async () => ((await ackedShared(a, b)) ?? '') >= newest, LONG);

    await a.app.get(SyncEngine).pruneAcknowledged();
    const kept = await a.db
      .selectFrom('shared_changes')
      .select((eb) => eb.fn.countAll<string>().as('n'))
      .where('hlc', '>', cAck)
      .executeTakeFirstOrThrow();
    expect(Number(kept.n)).toBeGreaterThanOrEqual(300);
    const status = await statusOf(a);
    expect(status.sharedLogSize).toBeGreaterThanOrEqual(300);
    expect(status.peers.find((p) => p.deviceId === c0.deviceId)?.pendingToPeer).toBeGreaterThanOrEqual(300);

    const c = await cluster.restart(c0);
    await waitConverged([a, b, c], { tags: 5 });
    expect(await c.list('/tags')).toEqual(await a.list('/tags'));
    await waitFor(
      'the log to be pruned once C has acknowledged',
      async () => (await statusOf(a)).sharedLogSize === 0,
      LONG,
    );
  });
});
