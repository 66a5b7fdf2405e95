import { Api, must, statusOf, waitConverged, waitPhase } from '../support/api';
import { Cluster, clusterPerTest } from '../support/cluster';
import { countRows } from '../support/db-queries';
import type { TestDevice } from '../support/device-harness';
import { LONG, waitFor } from '../support/device-harness';
import { createEntries, createLocation, createTag } from '../support/fixtures';

/**
 * Issue 4, "Recovery from broker loss": JetStream is a transport, not the source of truth. A
 * consumer or the stream deleted, or nats-server's storage wiped, while the devices run or while
 * they are down: they recreate what they need and reconcile by watermarks; nothing is lost.
 */
describe('recovery from broker loss', () => {
  const newCluster = clusterPerTest();

  /** Writes batches of entries on `d` until `until()` holds, then `after` more; returns how many. */
  async function keepWriting(
    d: Api,
    location: string,
    until: () => Promise<boolean>,
    after = 3,
    timeoutMs = LONG,
  ): Promise<number> {
    const end = Date.now() + timeoutMs;
    let n = 0;
    let batches = 0;
    while (!(await until())) {
      if (Date.now() > end) throw new Error('the condition never held while writing');
      await createEntries(d, location, 10, `w${batches++}-`);
      n += 10;
    }
    for (let i = 0; i < after; i++) {
      await createEntries(d, location, 10, `w${batches++}-`);
      n += 10;
    }
    return n;
  }

  async function pair(cluster: Cluster): Promise<{ a: TestDevice; b: TestDevice; loc: string }> {
    const a = await cluster.device('a', { heartbeatIntervalMs: 400 });
    const b = await cluster.device('b', { heartbeatIntervalMs: 400 });
    const loc = await createLocation(a, 'a');
    await createEntries(a, loc, 50, 'base');
    await createTag(b, 'base-tag');
    await waitConverged([a, b], { entries: 50, tags: 1 });
    return { a, b, loc };
  }

  it("a device's durable consumer deleted while it runs: recreated, and what was published meanwhile is reconciled", async () => {
    const cluster = await newCluster();
    const broker = await cluster.broker();
    // heartbeats slow enough that their anti-entropy (a catch-up after 3 beats) cannot be what
    // repairs B within this test's deadline: the reconciliation after the lost consumer must
    const a = await cluster.device('a', { heartbeatIntervalMs: 30_000 });
    const b = await cluster.device('b', { heartbeatIntervalMs: 30_000 });
    const loc = await createLocation(a, 'a');
    const base = await createEntries(a, loc, 50, 'base');
    await createTag(b, 'base-tag');
    await waitConverged([a, b], { entries: 50, tags: 1 });
    expect(await broker.consumerFilter(b.deviceId)).toBe(broker.subjects.logAll);

    // B's consumer is gone (and, for now, B does not notice): A keeps writing
    await broker.replaceConsumerWithStandIn(b.deviceId);
    const seq = await broker.lastSeq();
    await createEntries(a, loc, 100, 'unqueued');
    await must(a, 'DELETE', `/entries/${base[0]}`);
    await createTag(a, 'unqueued-tag');
    await waitFor("A's changes to be in the stream", async () => (await broker.lastSeq()) >= seq + 2, LONG);
    expect(await countRows(b, 'entries')).toBe(50); // none reached B

    // B sees its consumer lost, recreates it and reconciles; A writes on meanwhile
    const t0 = Date.now();
    expect(await broker.deleteConsumer(b.deviceId)).toBe(true);
    const written = await keepWriting(
      a,
      loc,
      async () => (await broker.consumerFilter(b.deviceId)) === broker.subjects.logAll,
      3,
      20_000,
    );
    await waitConverged([a, b], { entries: 50 + 100 - 1 + written, tags: 2 }, 30_000);
    expect(Date.now() - t0).toBeLessThan(45_000); // before three of A's heartbeats could have told B
    await waitPhase(b, 'ready', 15_000);
  });

  it('a consumer that silently stops delivering: heartbeats show what B lacks, and B catches up', async () => {
    const cluster = await newCluster();
    const broker = await cluster.broker();
    const a = await cluster.device('a', { heartbeatIntervalMs: 300 });
    const b = await cluster.device('b', { heartbeatIntervalMs: 300 });
    const loc = await createLocation(a, 'a');
    await createEntries(a, loc, 20, 'base');
    await waitConverged([a, b], { entries: 20 });

    await broker.replaceConsumerWithStandIn(b.deviceId); // B fetches on, receiving nothing, noticing nothing
    await createEntries(a, loc, 40, 'never-delivered');
    await createTag(a, 'never-delivered');
    await waitConverged([a, b], { entries: 60, tags: 1 }, 20_000);
    expect(await broker.consumerFilter(b.deviceId)).not.toBe(broker.subjects.logAll); // still the stand-in
  });

  it('the stream deleted while devices run: recreated with both consumers, nothing lost', async () => {
    const cluster = await newCluster();
    const broker = await cluster.broker();
    const { a, b, loc } = await pair(cluster);
    const jsm = await broker.jsm();
    expect(await jsm.streams.delete(broker.subjects.stream)).toBe(true);
    const written = await keepWriting(
      a,
      loc,
      async () => (await broker.consumerExists(a.deviceId)) && (await broker.consumerExists(b.deviceId)),
      5,
    );
    await createEntries(b, await createLocation(b, 'b'), 20, 'b');
    expect(await broker.streamExists()).toBe(true);
    await waitConverged([a, b], { entries: 50 + written + 20, locations: 2, tags: 1 });
  });

  it("nats-server's store wiped while devices run, with writes made while it was down", async () => {
    const cluster = await newCluster();
    const broker = await cluster.broker();
    const { a, b, loc } = await pair(cluster);

    await cluster.nats.stop();
    for (const d of [a, b])
      await waitFor('NATS to be seen down', async () => (await statusOf(d)).natsConnected === false, 15_000);
    await createEntries(a, loc, 120, 'a-down');
    const locB = await createLocation(b, 'b');
    await createEntries(b, locB, 80, 'b-down');
    await createTag(a, 'a-down');
    await createTag(b, 'b-down');
    cluster.nats.wipe();
    await cluster.nats.start(); // same port, empty store

    await waitFor('the stream to be recreated', () => broker.streamExists(), LONG);
    await broker.waitConsumer(a.deviceId);
    await broker.waitConsumer(b.deviceId);
    await waitConverged([a, b], { entries: 50 + 120 + 80, locations: 2, tags: 3 });
    // the live path works on the new stream
    await createEntries(a, loc, 10, 'a-after');
    await createEntries(b, locB, 10, 'b-after');
    await waitConverged([a, b], { entries: 270, locations: 2, tags: 3 });
    for (const d of [a, b]) await waitPhase(d, 'ready', 15_000);
  });

  it('store wiped while a device is down with changes still queued for it in the lost consumer', async () => {
    const cluster = await newCluster();
    const broker = await cluster.broker();
    const { a, b, loc } = await pair(cluster);

    await cluster.close(b);
    await createEntries(a, loc, 150, 'queued'); // published: they wait in B's durable consumer...
    await createTag(a, 'queued-tag');
    await waitFor("A's changes to be queued for B", async () => (await broker.pending(b.deviceId)) > 0, LONG);
    await cluster.nats.stop();
    cluster.nats.wipe(); // ...which is gone now
    await cluster.nats.start();
    await waitFor('the stream to be recreated by A', () => broker.streamExists(), LONG);
    await broker.waitConsumer(a.deviceId);
    await createEntries(a, loc, 30, 'after-wipe');

    const b2 = await cluster.restart(b);
    await broker.waitConsumer(b2.deviceId);
    await waitConverged([a, b2], { entries: 50 + 150 + 30, tags: 2 });
  });

  it('store wiped while every device is down: they recreate it on start and converge', async () => {
    const cluster = await newCluster();
    const broker = await cluster.broker();
    const { a, b, loc } = await pair(cluster);

    await cluster.close(b);
    await createEntries(a, loc, 100, 'missed-by-b');
    await createTag(a, 'missed-tag');
    await cluster.close(a);
    await cluster.nats.stop();
    cluster.nats.wipe();
    await cluster.nats.start();
    await broker.waitReachable();
    expect(await broker.streamExists()).toBe(false); // really gone

    const [a2, b2] = [await cluster.restart(a), await cluster.restart(b)];
    expect(await broker.streamExists()).toBe(true);
    await broker.waitConsumer(a2.deviceId);
    await broker.waitConsumer(b2.deviceId);
    await createEntries(b2, await createLocation(b2, 'b'), 20, 'b-after');
    await waitConverged([a2, b2], { entries: 50 + 100 + 20, locations: 2, tags: 2 });
  });
});
