import { randomBytes, randomUUID } from 'node:crypto';
import { connect, NatsConnection } from 'nats';
import { LibraryTrust } from '@lib/sync';
import { JetStreamTransport, replyContext } from '@lib/sync/transport/jetstream.transport';
import { LibrarySubjects } from '@lib/sync/transport/subjects';
import { waitFor } from '../support/device-harness';
import { NatsServerProcess } from '../support/nats-server';

/**
 * Request-reply between peers (catch-up, backfill pages) against a real nats-server: a request
 * whose reply was lost with the connection fails when the connection drops, not at its timeout,
 * so a backfill switches peers or retries at once after a broker restart.
 */
describe('peer requests', () => {
  const nats = new NatsServerProcess();
  let transport: JetStreamTransport | null = null;
  let responder: NatsConnection | null = null;
  beforeAll(() => nats.start());
  afterAll(async () => {
    await transport?.stop();
    await responder?.close().catch(() => undefined);
    await nats.dispose();
  });

  it('a request waiting for its reply fails as soon as NATS goes away, and works again after', async () => {
    const device = randomUUID();
    const library = randomUUID();
    const key = randomBytes(32);
    transport = new JetStreamTransport(
      [nats.url],
      'requester',
      new LibrarySubjects(library),
      device,
      LibraryTrust.inMemory(library, device, key),
    );
    transport.start();
    await waitFor('the transport to connect', async () => transport!.connected, 15_000);

    // a peer that takes requests and never answers (as if its reply were lost)
    responder = await connect({ servers: nats.url, maxReconnectAttempts: -1, reconnectTimeWait: 200 });
    const seen: string[] = [];
    responder.subscribe('peer.slow', { callback: (_e, m) => seen.push(m.subject) });
    // a member of the same library, answering sealed
    const peer = LibraryTrust.inMemory(library, randomUUID(), key);
    responder.subscribe('peer.fast', {
      callback: (_e, m) => {
        const request = peer.open(m.subject, m.data);
        const reply = Buffer.from(JSON.stringify({ ok: true, result: 'pong' }));
        m.respond(peer.seal(replyContext(m.subject, request.nonce), reply).data);
      },
    });
    await responder.flush();

    const started = Date.now();
    const pending = transport.request('peer.slow', {}, 120_000).then(
      () => 'answered',
      (e: Error) => e.message,
    );
    await waitFor('the request to arrive', async () => seen.length === 1, 10_000);
    await nats.stop();
    const outcome = await pending;
    expect(outcome).toMatch(/disconnected/);
    expect(Date.now() - started).toBeLessThan(60_000); // far from its 120 s timeout

    await nats.start(); // same port: both clients reconnect
    await waitFor('the transport to reconnect', async () => transport!.connected, 30_000);
    const answer = await waitFor(
      'a request to be answered again',
      () => transport!.request<string>('peer.fast', {}, 2000).catch(() => null),
      30_000,
    );
    expect(answer).toBe('pong');
  });
});
