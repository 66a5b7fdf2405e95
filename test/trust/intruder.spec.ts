import { randomUUID } from 'node:crypto';
import { connect, NatsConnection } from 'nats';
import { digestOf, must, statusOf, waitConverged } from '../support/api';
import { Cluster } from '../support/cluster';
import { deadLetters } from '../support/db-queries';
import { LONG, waitFor } from '../support/device-harness';
import { createEntries, createLocation } from '../support/fixtures';
import { Broker, cursor, entryRow, logSubject, sharedMessage, stamp, stateMessage, streamName } from '../support/wire';

/**
 * The broker is someone else's server (docs/design.md "Trust"). A NATS client that is not a member
 * of the library (it knows the library id, which is in every subject) reads nothing the members
 * write, and nothing it publishes changes anything: today's plaintext formats, captured messages
 * moved to another subject, bit-flipped copies, forged removals. A member cannot sign as another.
 */

const SECRETS = ['Secret Holiday Tag', 'Album of hidden things', 'a private note about taxes', 'secret-plans-2027'];

/** Whether the bytes hold the secret in plain text or in base64 (at any of the three alignments). */
function leaks(data: Buffer, secret: string): boolean {
  const text = data.toString('latin1');
  if (text.includes(secret)) return true;
  for (let shift = 0; shift < 3; shift++) {
    const enc = Buffer.concat([Buffer.alloc(shift), Buffer.from(secret)]).toString('base64');
    const core = enc.slice(Math.ceil((shift * 4) / 3) + 1, enc.length - 4);
    if (text.includes(core)) return true;
  }
  return false;
}

describe('an outsider on the broker', () => {
  let cluster: Cluster;
  let spy: NatsConnection | null = null;
  afterEach(async () => {
    await spy?.close().catch(() => undefined);
    await cluster?.dispose();
  });

  it('reads none of what the members write: live traffic, the stream, requests and a backfill', async () => {
    cluster = await new Cluster().start();
    const [a, b] = await cluster.startDevices(['a', 'b']);
    spy = await connect({ servers: cluster.natsUrl, name: 'outsider' });
    const seen: Buffer[] = [];
    spy.subscribe('>', { callback: (_e, m) => seen.push(Buffer.from(m.data)) });
    await spy.flush();

    const tag = await must(a, 'POST', '/tags', { name: SECRETS[0] });
    await must(b, 'POST', '/albums', { name: SECRETS[1] });
    const location = await createLocation(a, 'a');
    const [entry] = await createEntries(a, location, 50, SECRETS[3]);
    await must(a, 'PUT', `/entries/${entry}/metadata`, { notes: SECRETS[2], favorite: true });
    await must(a, 'PUT', `/tags/${tag.id}/entries/${entry}`);
    await waitConverged([a, b], { entries: 50, tags: 1, albums: 1 });
    // a new member joins and backfills everything through peer requests
    const c = await cluster.device('c');
    await waitConverged([a, b, c], { entries: 50, tags: 1, albums: 1 });
    expect((await c.req('GET', `/entries/${entry}/metadata`)).body.notes).toBe(SECRETS[2]);

    // and the stream, as the broker stores it
    const jsm = await spy.jetstreamManager();
    const stream = streamName(cluster.libraryId);
    const last = (await jsm.streams.info(stream)).state.last_seq;
    const stored: Buffer[] = [];
    for (let seq = 1; seq <= last; seq++)
      stored.push(Buffer.from((await jsm.streams.getMessage(stream, { seq })).data));

    expect(seen.length).toBeGreaterThan(20);
    expect(stored.length).toBeGreaterThan(5);
    // the outsider's view holds the names somewhere only if it could read them: it cannot
    for (const secret of SECRETS) {
      expect({ secret, live: seen.filter((d) => leaks(d, secret)).length }).toEqual({ secret, live: 0 });
      expect({ secret, stored: stored.filter((d) => leaks(d, secret)).length }).toEqual({ secret, stored: 0 });
    }
    // (the check itself finds a secret where there is one)
    expect(leaks(Buffer.from(JSON.stringify({ n: SECRETS[0] })), SECRETS[0])).toBe(true);
    expect(leaks(Buffer.from(Buffer.from(`xx${SECRETS[1]}`).toString('base64')), SECRETS[1])).toBe(true);
  });

  it('changes nothing with what it publishes: plaintext, re-addressed, bit-flipped and forged removals are dead-lettered; replays are harmless', async () => {
    cluster = await new Cluster().start();
    const [a, b] = await cluster.startDevices(['a', 'b']);
    const lib = cluster.libraryId;
    const location = await createLocation(a, 'a');
    const [victim] = await createEntries(a, location, 3);
    const tag = await must(a, 'POST', '/tags', { name: 'genuine' });
    await waitConverged([a, b], { entries: 3, tags: 1 });
    const digest = await digestOf(a);

    // an outsider: no library key
    const outsider = await Broker.connect(cluster.natsUrl, lib);
    cluster.onDispose(() => outsider.close());
    const jsm = await outsider.jsm();
    const stream = streamName(lib);
    const captured = async (subject: string) =>
      Buffer.from((await jsm.streams.getMessage(stream, { last_by_subj: subject })).data);
    const aState = await captured(logSubject(lib, 'state', a.deviceId));
    const aShared = await captured(logSubject(lib, 'shared', a.deviceId));
    const flipped = Buffer.from(aState);
    flipped[Math.floor(flipped.length / 2)] ^= 0x01;
    const now = Date.now();
    const stranger = randomUUID();

    const forged: { what: string; subject: string; data: Buffer | Record<string, unknown>; reason: RegExp }[] = [
      {
        what: "today's plaintext shared message",
        subject: logSubject(lib, 'shared', stranger),
        data: sharedMessage(lib, stranger, [
          { hlc: stamp(now, 0, stranger), model: 'tags', record_key: tag.id, op: 'set', fields: { name: 'pwned' } },
        ]),
        reason: /not_sealed/,
      },
      {
        what: "a plaintext state message in A's name on A's subject",
        subject: logSubject(lib, 'state', a.deviceId),
        data: stateMessage(lib, a.deviceId, {
          from: null,
          to: cursor(stamp(now + 1000, 0, a.deviceId), 2, victim),
          rows: [
            {
              model: 'entries',
              row: entryRow(a.deviceId, stamp(now + 1000, 0, a.deviceId), {
                id: victim,
                locationId: location,
                name: 'x',
              }),
            },
          ],
        }),
        reason: /not_sealed/,
      },
      {
        what: "A's captured state message moved to B's subject",
        subject: logSubject(lib, 'state', b.deviceId),
        data: aState,
        reason: /bad_signature|origin/,
      },
      {
        what: "A's captured shared message moved to a stranger's subject",
        subject: logSubject(lib, 'shared', stranger),
        data: aShared,
        reason: /bad_signature|origin/,
      },
      {
        what: "a bit-flipped copy of A's state message",
        subject: logSubject(lib, 'state', a.deviceId),
        data: flipped,
        reason: /bad_signature|undecryptable/,
      },
      {
        what: 'a plaintext removal of B',
        subject: `sync.${lib}.log.removed.${a.deviceId}`,
        data: { v: 1, kind: 'removed', library: lib, origin: a.deviceId, device: b.deviceId },
        reason: /not_sealed/,
      },
      {
        what: "A's captured message republished as a removal announcement",
        subject: `sync.${lib}.log.removed.${a.deviceId}`,
        data: aShared,
        reason: /bad_signature/,
      },
    ];
    for (const f of forged) await outsider.publish(f.subject, f.data, randomUUID(), { raw: true });
    // core NATS too: a plaintext heartbeat and a re-addressed request go nowhere
    outsider.nc.publish(`sync.${lib}.presence.${stranger}`, Buffer.from('{"v":1,"kind":"heartbeat"}'));
    outsider.nc.publish(`sync.${lib}.rpc.${a.deviceId}.watermarks`, aShared);
    // a genuine message replayed on its own subject (a new message id: not deduplicated) changes nothing
    await outsider.publish(logSubject(lib, 'state', a.deviceId), aState, randomUUID(), { raw: true });

    // sync goes on
    const after = await must(a, 'POST', '/tags', { name: 'written after the forgeries' });
    await waitFor('the genuine write on b', async () => (await b.req('GET', `/tags/${after.id}`)).status === 200, LONG);
    for (const d of [a, b]) {
      // a device skips what arrives on its own subjects unread (its own broadcasts coming back)
      const expected = forged.filter((f) => !f.subject.endsWith(d.deviceId));
      const letters = await waitFor(
        `${d.config.deviceName} to dead-letter the forgeries`,
        async () => {
          const rows = (await deadLetters(d.db)).filter((l) => l.subject.includes('.log.'));
          if (rows.length < expected.length) throw new Error(`${rows.length} dead letters`);
          return rows;
        },
        LONG,
      );
      expect(letters.length).toBe(expected.length);
      for (const f of expected) {
        const letter = letters.find((l) => l.subject === f.subject && f.reason.test(l.reason));
        expect({ what: f.what, found: !!letter }).toEqual({ what: f.what, found: true });
      }
      expect((await statusOf(d)).deadLetters).toBeGreaterThanOrEqual(expected.length);
      expect((await d.req('GET', `/tags/${tag.id}`)).body.name).toBe('genuine');
      expect((await d.req('GET', `/entries/${victim}`)).body.name).not.toBe('x');
    }
    // B was not removed, and holds what A holds
    expect((await statusOf(b)).phase).toBe('ready');
    await must(a, 'DELETE', `/tags/${after.id}`);
    await waitFor('a and b to agree again', async () => {
      const [da, db] = [await digestOf(a), await digestOf(b)];
      return JSON.stringify(da) === JSON.stringify(db) && JSON.stringify(da) === JSON.stringify(digest);
    });
  });

  it("a member cannot sign as another member: A's id with other keys is refused", async () => {
    cluster = await new Cluster().start();
    const [a, b] = await cluster.startDevices(['a', 'b']);
    const lib = cluster.libraryId;
    const tag = await must(a, 'POST', '/tags', { name: 'genuine' });
    await waitConverged([a, b], { tags: 1 });
    // a member (it holds the library key) that claims to be A: a key pair of its own under A's id
    const member = await cluster.broker();
    const subject = logSubject(lib, 'shared', a.deviceId);
    await member.publish(
      subject,
      sharedMessage(lib, a.deviceId, [
        { hlc: stamp(Date.now(), 0, a.deviceId), model: 'tags', record_key: tag.id, op: 'set', fields: { name: 'x' } },
      ]),
    );
    const letter = await waitFor('b to refuse it', async () =>
      (await deadLetters(b.db)).find((l) => l.subject === subject),
    );
    expect(letter!.reason).toMatch(/bad_signature/);
    expect((await b.req('GET', `/tags/${tag.id}`)).body.name).toBe('genuine');
  });
});
