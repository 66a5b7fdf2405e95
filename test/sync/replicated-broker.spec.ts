import { connect, JetStreamManager, NatsConnection, StreamInfo } from 'nats';
import { LibrarySubjects } from '@lib/sync';
import { waitConverged } from '../support/api';
import { clusterPerTest } from '../support/cluster';
import { LONG, waitFor } from '../support/device-harness';
import { createEntries, createLocation } from '../support/fixtures';
import { freePort, NatsServerProcess } from '../support/nats-server';
import { expectAcknowledgedWrites, startWriter } from '../support/writers';

/**
 * Issue 11, "A replicated broker": three clustered nats-server processes, the library's stream
 * with three replicas (SYNC_STREAM_REPLICAS). A stream created with one replica is raised to three
 * in place; the stream's leader is SIGKILLed while both devices write: every acknowledged write
 * arrives on both, and the stream survives (the same stream, never recreated).
 */
async function natsCluster(): Promise<NatsServerProcess[]> {
  const ports = await Promise.all([0, 1, 2].map(() => freePort()));
  const clusterPorts = await Promise.all([0, 1, 2].map(() => freePort()));
  return ports.map((port, i) => {
    const routes = clusterPorts.filter((_, j) => j !== i).map((p) => `nats://127.0.0.1:${p}`);
    const server = new NatsServerProcess(
      `server_name: n${i + 1}\ncluster { name: sync, host: 127.0.0.1, port: ${clusterPorts[i]}, routes: [${routes.join(', ')}] }\n`,
    );
    server.port = port;
    return server;
  });
}

describe('a replicated broker: three clustered nats-servers, the stream on all three', () => {
  const newCluster = clusterPerTest({ heartbeatIntervalMs: 500 });
  const servers: NatsServerProcess[] = [];
  let nc: NatsConnection | null = null;
  afterEach(async () => {
    await nc?.close().catch(() => undefined);
    for (const s of servers.splice(0)) await s.dispose();
  });

  it('raises an R1 stream to three replicas in place, and survives the loss of its leader while devices write', async () => {
    servers.push(...(await natsCluster()));
    await Promise.all(servers.map((s) => s.start()));
    const urls = servers.map((s) => s.url);
    const cluster = await newCluster();
    const stream = new LibrarySubjects(cluster.libraryId).stream;
    nc = await connect({ servers: urls, maxReconnectAttempts: -1, reconnectTimeWait: 200 });
    // JetStream answers once the three servers have elected a meta leader
    const jsm: JetStreamManager = (await waitFor(
      'the NATS cluster electing its JetStream meta leader',
      async () => {
        try {
          const m = await nc!.jetstreamManager({ timeout: 2000 });
          await m.getAccountInfo();
          return m;
        } catch {
          return null;
        }
      },
      LONG,
      250,
    ))!;
    const info = async (): Promise<StreamInfo> => jsm.streams.info(stream);

    // --- A alone, with one replica (the default): an R1 stream (the meta leader may take a moment)
    let a = await cluster.device('a', { natsUrls: urls, streamReplicas: 1 });
    const loc = await createLocation(a, 'a');
    await createEntries(a, loc, 50, 'before');
    const first = await info();
    expect(first.config.num_replicas).toBe(1);
    const created = first.created;
    const held = first.state.messages;
    expect(held).toBeGreaterThan(0);

    // --- A again with SYNC_STREAM_REPLICAS=3, and B: the same stream, raised in place
    a = await cluster.restart(a, { natsUrls: urls, streamReplicas: 3 });
    const b = await cluster.device('b', { natsUrls: urls, streamReplicas: 3 });
    const raised = (await waitFor(
      'the stream at three replicas, all current',
      async () => {
        const i = await info();
        const replicas = i.cluster?.replicas ?? [];
        return i.config.num_replicas === 3 && replicas.length === 2 && replicas.every((r) => r.current) ? i : null;
      },
      LONG,
      250,
    ))!;
    expect(raised.created).toBe(created);
    expect(raised.state.messages).toBeGreaterThanOrEqual(held);
    await waitConverged([a, b], { entries: 50 });

    // --- both write; the stream's leader is killed meanwhile
    const locB = await createLocation(b, 'b');
    const writers = [startWriter(a, loc, { batch: 20, label: 'wa' }), startWriter(b, locB, { batch: 20, label: 'wb' })];
    await Promise.all(writers.map((w) => w.progress(3)));
    const leaderName = raised.cluster!.leader!;
    const leader = servers[Number(leaderName.slice(1)) - 1];
    await leader.stop('SIGKILL');
    const after = (await waitFor(
      'a new stream leader',
      async () => {
        const i = await info().catch(() => null);
        return i?.cluster?.leader && i.cluster.leader !== leaderName ? i : null;
      },
      LONG,
      250,
    ))!;
    // writes go on through the new leader
    await Promise.all(writers.map((w) => w.progress(5)));
    const stats = await Promise.all(writers.map((w) => w.stop()));
    await waitConverged([a, b], {}, 2 * LONG, 500);
    for (const d of [a, b]) for (const s of stats) await expectAcknowledgedWrites(d, s);

    // the stream survived: the same one (not recreated), three replicas, holding what was written
    const final = await info();
    expect(final.created).toBe(created);
    expect(after.created).toBe(created);
    expect(final.config.num_replicas).toBe(3);
    expect(final.state.messages).toBeGreaterThan(raised.state.messages);
  }, 300_000);
});
