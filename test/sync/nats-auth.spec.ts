import { randomUUID } from 'node:crypto';
import { connect, Events, type NatsConnection, type Status } from 'nats';
import { decodeInvite, inboxPrefixOf, LibrarySubjects, type NatsAuth } from '@lib/sync';
import { authorizationBlock, type DeviceUser } from '../../deploy/nats/authorization.cjs';
import { digestOf, must, waitConverged } from '../support/api';
import { Cluster, startProcess } from '../support/cluster';
import { type TestDevice, waitFor } from '../support/device-harness';

/**
 * NATS with authorization (deploy/nats): every device logs in as its own user, whose permissions
 * come from the same generator as docker-compose's nats.conf. Devices sync through it as through an
 * open server (owned and shared writes, an invite join), while a client holding device A's
 * credentials cannot publish as device B, read B's requests or inbox, and a wrong password is
 * refused at connect.
 */
describe('NATS authorization', () => {
  let cluster: Cluster;
  const libraryId = randomUUID();
  const users: DeviceUser[] = ['a', 'b', 'joiner', 'process'].map((name) => ({
    name: `device-${name}`,
    id: randomUUID(),
    password: `pw-${randomUUID()}`,
    libraries: [libraryId],
  }));
  const [A, B, J, P] = users;
  const admin = { name: 'admin', password: `pw-${randomUUID()}` };
  const authOf = (u: DeviceUser): NatsAuth => ({ kind: 'password', user: u.name, pass: u.password });
  const clients: NatsConnection[] = [];
  let b: TestDevice;

  beforeAll(async () => {
    cluster = await new Cluster({ libraryId, natsSettings: authorizationBlock(users, admin) }).start();
  });
  afterAll(async () => {
    for (const nc of clients) await nc.close().catch(() => undefined);
    await cluster?.dispose();
  });

  /** A raw client logged in as `u`, with the inbox its permissions allow, whose errors are kept. */
  async function clientAs(u: DeviceUser): Promise<{ nc: NatsConnection; errors: Status[] }> {
    const nc = await connect({
      servers: cluster.natsUrl,
      user: u.name,
      pass: u.password,
      inboxPrefix: inboxPrefixOf(u.id),
      name: `raw ${u.name}`,
    });
    clients.push(nc);
    const errors: Status[] = [];
    void (async () => {
      for await (const s of nc.status()) if (s.type === Events.Error) errors.push(s);
    })();
    return { nc, errors };
  }

  const violation = (errors: Status[], operation: string, subject: string) =>
    errors.some(
      (s) =>
        s.data === 'PERMISSIONS_VIOLATION' &&
        (s as { permissionContext?: { operation: string; subject: string } }).permissionContext?.operation ===
          operation &&
        (s as { permissionContext?: { operation: string; subject: string } }).permissionContext?.subject === subject,
    );

  it('devices sync through it, each as its own user; an invite join works with a pre-provisioned user', async () => {
    const a = await cluster.device('a', { deviceId: A.id, natsAuth: authOf(A) });
    b = await cluster.device('b', { deviceId: B.id, natsAuth: authOf(B) });

    // shared: a tag written on A
    const tag = await must(a, 'POST', '/tags', { name: 'through authorization' });
    // owned: a location and an entry of A's
    const loc = await must(a, 'POST', '/locations', { name: 'photos', path: '/photos' });
    const entry = await must(a, 'POST', '/entries', {
      locationId: loc.id,
      name: 'x.jpg',
      path: '/photos/x.jpg',
      kind: 'file',
      sizeBytes: 12,
      modifiedAt: new Date().toISOString(),
    });
    await waitFor('the tag on B', async () => (await b.req('GET', `/tags/${tag.id}`)).body?.name === tag.name);
    await waitFor('the entry on B', async () => (await b.req('GET', `/entries/${entry.id}`)).body?.deviceId === A.id);
    // and back: B's write reaches A (acks, heartbeats and requests flow both ways)
    const back = await must(b, 'POST', '/tags', { name: 'from B' });
    await waitFor('B tag on A', async () => (await a.req('GET', `/tags/${back.id}`)).status === 200);
    await waitFor('A to see B acknowledge', async () => {
      const s = await must(a, 'GET', '/sync/status');
      return s.peers.find((p: { deviceId: string }) => p.deviceId === B.id)?.online === true;
    });

    // an invite presented through the authorized server, by a device with a user of its own
    const invite = await must<{ token: string }>(a, 'POST', '/sync/invites', {});
    const j = await cluster.device('joiner', {
      deviceId: J.id,
      natsAuth: authOf(J),
      libraryKey: null,
      libraryInvite: decodeInvite(invite.token),
    });
    await waitConverged([a, b, j], { tags: 2, entries: 1 });

    // a device process given its credentials in NATS_URL (taken out of the address it logs)
    const p = await cluster.process('process', {
      DEVICE_ID: P.id,
      NATS_URL: cluster.natsUrl.replace('nats://', `nats://${P.name}:${encodeURIComponent(P.password)}@`),
    });
    await startProcess(p);
    await waitConverged([a, p], { tags: 2, entries: 1 });
    expect(p.logTail(200)).not.toContain(P.password);
    expect(p.logTail(200)).not.toMatch(/permissions violation/i);
  });

  it("a client holding A's credentials cannot publish as B, nor read what is B's", async () => {
    const subjects = new LibrarySubjects(cluster.libraryId);
    const before = await digestOf(b);
    const admin$ = await connect({ servers: cluster.natsUrl, user: admin.name, pass: admin.password });
    clients.push(admin$);
    const jsm = await admin$.jetstreamManager();
    const lastOfB = async () => {
      try {
        return (await jsm.streams.getMessage(subjects.stream, { last_by_subj: subjects.log('state', B.id) })).seq;
      } catch {
        return null;
      }
    };
    const seqBefore = await lastOfB();

    const { nc, errors } = await clientAs(A);
    const junk = Buffer.from('{"v":1,"kind":"state"}');
    nc.publish(subjects.log('state', B.id), junk);
    nc.publish(subjects.presence(B.id), junk);
    nc.publish(subjects.ack(A.id, B.id), junk);
    // JetStream refuses nothing here: the server drops it before the stream sees it
    await expect(nc.jetstream().publish(subjects.log('state', B.id), junk, { timeout: 2000 })).rejects.toThrow();
    // nor take B's messages from B's consumer, nor capture B's inbox in a stream of its own
    nc.publish(`$JS.API.CONSUMER.MSG.NEXT.${subjects.stream}.${subjects.durable(B.id)}`, Buffer.from('{"batch":1}'));
    const jsmA = await nc.jetstreamManager({ checkAPI: false });
    await expect(jsmA.streams.add({ name: 'CAPTURE', subjects: [`${inboxPrefixOf(B.id)}.>`] })).rejects.toThrow();
    nc.subscribe(subjects.rpc(B.id, 'watermarks'));
    nc.subscribe(`${inboxPrefixOf(B.id)}.>`);
    await nc.flush();
    await waitFor('the server to report the violations', () =>
      [
        violation(errors, 'publish', subjects.log('state', B.id)),
        violation(errors, 'publish', subjects.presence(B.id)),
        violation(errors, 'publish', subjects.ack(A.id, B.id)),
        violation(errors, 'publish', `$JS.API.CONSUMER.MSG.NEXT.${subjects.stream}.${subjects.durable(B.id)}`),
        violation(errors, 'publish', '$JS.API.STREAM.CREATE.CAPTURE'),
        violation(errors, 'subscription', subjects.rpc(B.id, 'watermarks')),
        violation(errors, 'subscription', `${inboxPrefixOf(B.id)}.>`),
      ].every(Boolean),
    );
    // what A may do, it still does: its own presence subject
    nc.publish(subjects.presence(A.id), junk);
    await nc.flush();
    expect(violation(errors, 'publish', subjects.presence(A.id))).toBe(false);

    expect(await lastOfB()).toBe(seqBefore);
    expect(await digestOf(b)).toEqual(before);
  });

  it('refuses a wrong password and an unknown user', async () => {
    await expect(
      connect({ servers: cluster.natsUrl, user: A.name, pass: 'wrong', reconnect: false, timeout: 3000 }),
    ).rejects.toMatchObject({ code: 'AUTHORIZATION_VIOLATION' });
    await expect(
      connect({ servers: cluster.natsUrl, user: 'nobody', pass: 'x', reconnect: false, timeout: 3000 }),
    ).rejects.toMatchObject({ code: 'AUTHORIZATION_VIOLATION' });
    await expect(connect({ servers: cluster.natsUrl, reconnect: false, timeout: 3000 })).rejects.toMatchObject({
      code: 'AUTHORIZATION_VIOLATION',
    });
  });
});
