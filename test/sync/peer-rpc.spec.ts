import { randomUUID } from 'node:crypto';
import { connect, NatsConnection } from 'nats';
import { LibrarySubjects, LibraryTrust, PeerClient } from '@lib/sync';
import { JetStreamTransport, replyContext } from '@lib/sync/transport/jetstream.transport';
import { waitFor } from '../support/device-harness';
import { Cluster } from '../support/cluster';

/**
 * The peer protocol on the wire (rpc/protocol.ts): a request is the JSON of its type, sealed by a
 * member, on sync.<lib>.rpc.<device>.<method> (watermarks also on rpc.all); a reply, sealed for
 * that request, is {ok: true, result} or {ok: false, error} with the handler's own message.
 */
describe('peer requests on the wire', () => {
  const cluster = new Cluster();
  let nc: NatsConnection;
  let transport: JetStreamTransport;
  beforeAll(async () => {
    await cluster.start();
    nc = await connect({ servers: cluster.natsUrl });
    cluster.onDispose(() => nc.close());
  });
  afterAll(async () => {
    await transport?.stop();
    await cluster.dispose();
  });

  // a member of the library (it holds the pre-shared key): requests sealed, replies opened
  let member: LibraryTrust;
  const ask = async (subject: string, body: string) => {
    member ??= LibraryTrust.inMemory(cluster.libraryId, randomUUID(), cluster.libraryKey());
    const sealed = member.seal(subject, Buffer.from(body));
    const reply = await nc.request(subject, sealed.data, { timeout: 10_000 });
    return JSON.parse(member.open(replyContext(subject, sealed.nonce), reply.data).plaintext.toString());
  };

  it('answers in the {ok, result} / {ok: false, error} envelope, with the error messages of its handlers', async () => {
    const a = await cluster.device('a');
    const s = new LibrarySubjects(cluster.libraryId);

    const all = await ask(s.rpcAll('watermarks'), '{}');
    expect(all).toMatchObject({ ok: true, result: { deviceId: a.deviceId, name: 'a', phase: 'ready' } });
    const own = await ask(s.rpc(a.deviceId, 'watermarks'), '{}');
    expect(own.result.deviceId).toBe(a.deviceId);

    const page = await ask(s.rpc(a.deviceId, 'owned.page'), JSON.stringify({ owner: a.deviceId, after: null }));
    expect(page).toEqual({ ok: true, result: { rows: [], tombstones: [], last: null, done: true } });

    // a request its schema refuses: the zod message, not Nest's "Internal server error"
    const invalid = await ask(s.rpc(a.deviceId, 'owned.page'), JSON.stringify({ owner: 'nobody', after: null }));
    expect(invalid.ok).toBe(false);
    expect(invalid.error).toMatch(/Invalid uuid/);
    const extra = await ask(s.rpc(a.deviceId, 'shared.changes'), JSON.stringify({ after: null, more: 1 }));
    expect(extra.error).toMatch(/Unrecognized key/);
    // an error thrown by a handler
    const unknown = await ask(s.rpc(a.deviceId, 'shared.snapshot'), JSON.stringify({ model: 'nope', after: null }));
    expect(unknown).toEqual({ ok: false, error: 'unknown shared model nope' });
    expect(await ask(s.rpc(a.deviceId, 'owned.page'), 'not json')).toEqual({ ok: false, error: 'request is not JSON' });

    // the typed client, over a transport of its own
    const clientId = randomUUID();
    transport = new JetStreamTransport(
      [cluster.natsUrl],
      'client',
      s,
      clientId,
      LibraryTrust.inMemory(cluster.libraryId, clientId, cluster.libraryKey()),
    );
    transport.start();
    await waitFor('the transport to connect', async () => transport.connected, 15_000);
    const client = new PeerClient(transport);
    expect((await client.watermarks(a.deviceId)).deviceId).toBe(a.deviceId);
    expect((await client.discover()).map((w) => w.deviceId)).toEqual([a.deviceId]);
    expect(await client.snapshot(a.deviceId, { model: 'tags', after: null })).toEqual({ records: [], done: true });
    await expect(client.ownedPage(a.deviceId, { owner: a.deviceId, after: null, model: 'nope' })).rejects.toThrow(
      `${s.rpc(a.deviceId, 'owned.page')}: unknown model nope`,
    );
  });
});
