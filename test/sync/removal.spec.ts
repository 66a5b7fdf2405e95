import { SyncEngine } from '@lib/sync';
import { must, statusOf } from '../support/api';
import { Cluster } from '../support/cluster';
import { waitFor } from '../support/device-harness';

/** A device removed from the library no longer holds back pruning, on every device. */
describe('removing a device from the library', () => {
  let cluster: Cluster;
  afterEach(async () => {
    await cluster?.dispose();
  });

  it('an offline device that is removed stops holding the log back, and every peer forgets it', async () => {
    cluster = await new Cluster().start();
    const [a, b, c] = await cluster.startDevices(['a', 'b', 'c'], { heartbeatIntervalMs: 300 });
    // c has acknowledged once (so it is known everywhere), then goes away for good
    const first = await must(a, 'POST', '/tags', { name: 'before' });
    await waitFor('c to have the tag', async () => (await c.req('GET', `/tags/${first.id}`)).status === 200);
    await waitFor('a to see c online', async () =>
      (await statusOf(a)).peers.some((p) => p.deviceId === c.deviceId && p.online),
    );
    await c.close();
    for (let i = 0; i < 20; i++) await must(a, 'PATCH', `/tags/${first.id}`, { name: `edit ${i}` });
    await waitFor(
      'b to have the last edit',
      async () => (await b.req('GET', `/tags/${first.id}`)).body?.name === 'edit 19',
    );
    // once b has acknowledged everything, a prune pass still keeps the rows c has not seen
    const newest = (
      await a.db.selectFrom('shared_changes').select('hlc').orderBy('hlc', 'desc').limit(1).executeTakeFirstOrThrow()
    ).hlc;
    await waitFor('b to acknowledge the newest change', async () => {
      const row = await a.db
        .selectFrom('devices')
        .select('acked_shared')
        .where('id', '=', b.deviceId)
        .executeTakeFirst();
      return (row?.acked_shared ?? '') >= newest;
    });
    await a.app.get(SyncEngine).pruneAcknowledged();
    expect((await statusOf(a)).sharedLogSize).toBeGreaterThan(0);

    expect((await a.req('DELETE', `/sync/peers/${a.deviceId}`)).status).toBe(400);
    expect((await a.req('DELETE', '/sync/peers/00000000-0000-4000-8000-000000000000')).status).toBe(404);
    expect((await a.req('DELETE', `/sync/peers/${c.deviceId}`)).status).toBe(204);

    await waitFor('a to prune its log', async () => (await statusOf(a)).sharedLogSize === 0, 30_000);
    await waitFor(
      'b to learn of the removal',
      async () => !(await statusOf(b)).peers.some((p) => p.deviceId === c.deviceId),
      30_000,
    );
    expect((await statusOf(a)).peers.map((p) => p.deviceId)).toEqual([b.deviceId]);
  });
});
