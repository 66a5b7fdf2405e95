import { get, IncomingMessage } from 'node:http';
import { EventSource } from 'eventsource';
import { EventsController } from '../../src/library/events/events.controller';
import { must, waitPhase } from '../support/api';
import { clusterPerTest } from '../support/cluster';
import { http, waitFor } from '../support/device-harness';
import { createEntries, createLocation, createTag, seedEntries } from '../support/fixtures';
import { freePort } from '../support/nats-server';

/**
 * Issue 11, "Change feed": GET /sync/events, read by a real EventSource client (the `eventsource`
 * package, as a browser's) across a restart of the device: one event per change committed there,
 * local or received, each once, in sequence order; the client reconnects by itself with
 * Last-Event-ID and gets what it missed while the device was down, and nothing it had.
 */
interface FeedEvent {
  seq: number;
  model: string;
  id: string;
  op: 'upsert' | 'delete';
  origin: string;
  lastEventId: string;
}

describe('change feed: GET /sync/events', () => {
  const newCluster = clusterPerTest({ heartbeatIntervalMs: 500 });
  const sources: EventSource[] = [];
  afterEach(() => {
    for (const s of sources.splice(0)) s.close();
  });

  it('streams local and received changes, and resumes after a restart of the device with what it missed', async () => {
    const cluster = await newCluster();
    const b = await cluster.device('b');
    const p = await cluster.process('p');
    const port = await freePort();
    await p.start(port);
    await waitPhase(p);

    // bad filters are refused before the stream starts
    const bad = await http(p.url, 'GET', '/sync/events?models=entries,nope');
    expect(bad.status).toBe(400);
    expect(bad.body.message).toMatch(/^models: unknown model "nope"/);
    expect((await http(p.url, 'GET', '/sync/events', undefined, 5000, { 'last-event-id': 'x1' })).status).toBe(400);

    const events: FeedEvent[] = [];
    let opened = 0;
    const es = new EventSource(`${p.url}/sync/events?models=entries,tags`);
    sources.push(es);
    es.onopen = () => opened++;
    es.onmessage = (m) =>
      events.push({ ...(JSON.parse(m.data) as Omit<FeedEvent, 'lastEventId'>), lastEventId: m.lastEventId });
    await waitFor('the feed open', () => opened === 1, 10_000, 20);

    // local writes on P, and a shared write received from B
    const loc = await createLocation(p, 'p');
    const entries = await createEntries(p, loc, 3, 'feed');
    const tagB = await createTag(b, 'from-b', 'red');
    const has = (model: string, id: string, op: string, origin: string) =>
      events.some((e) => e.model === model && e.id === id && e.op === op && e.origin === origin);
    await waitFor(
      'the local entries and the received tag',
      () => entries.every((id) => has('entries', id, 'upsert', p.deviceId)) && has('tags', tagB, 'upsert', b.deviceId),
      15_000,
      50,
    );
    // ?models= leaves the location out
    expect(events.every((e) => e.model === 'entries' || e.model === 'tags')).toBe(true);
    expect(events.every((e) => e.lastEventId === String(e.seq))).toBe(true);

    // P stops; B writes meanwhile (a new tag, and deletes its first one); P comes back on its port
    expect(await p.stop('SIGTERM')).toBe(0);
    const tagB2 = await createTag(b, 'while-p-was-down', null);
    await must(b, 'DELETE', `/tags/${tagB}`);
    await p.start(port);
    await waitPhase(p);
    // the client reconnects by itself (retry hint) with Last-Event-ID: it gets what P received meanwhile
    await waitFor(
      'the changes P received while it was down',
      () => has('tags', tagB2, 'upsert', b.deviceId) && has('tags', tagB, 'delete', b.deviceId),
      30_000,
      50,
    );
    expect(opened).toBeGreaterThanOrEqual(2);
    // and one more local change after the restart
    const [late] = await createEntries(p, loc, 1, 'late', 10);
    await waitFor('the late entry', () => has('entries', late, 'upsert', p.deviceId), 15_000, 50);

    // each change once, in sequence order: nothing it already had came again
    const seqs = events.map((e) => e.seq);
    expect(seqs).toEqual([...seqs].sort((x, y) => x - y));
    expect(new Set(seqs).size).toBe(seqs.length);
  }, 180_000);

  it('sends keep-alive comments, and disconnects a client that does not read (with a retry hint) rather than buffer for it', async () => {
    const cluster = await newCluster();
    const a = await cluster.device('a');
    const feed = a.app.get(EventsController);
    // shorter than in production (15 s, 1 MB), so that the test is quick
    feed.keepAliveMs = 300;
    feed.slowClientBytes = 64 * 1024;
    const open = (onResponse: (res: IncomingMessage) => void) => {
      const req = get(`${a.url}/sync/events`, onResponse);
      req.on('error', () => undefined);
      return req;
    };

    // an idle stream gets keep-alive comments
    let idleText = '';
    const idle = open((res) => res.on('data', (c: Buffer) => (idleText += c.toString())));
    await waitFor('two keep-alive comments', () => (idleText.match(/^: keep-alive$/gm) ?? []).length >= 2, 10_000, 50);
    expect(idleText.startsWith('retry: 2000\n\n')).toBe(true);
    idle.destroy();
    await waitFor('the idle stream closed', () => feed.openStreams === 0, 5000, 20);

    // a client that does not read: the device writes until its buffer for it passes the limit,
    // then ends the stream with a retry hint, instead of holding every change in memory
    let slowRes: IncomingMessage | null = null;
    const slow = open((res) => {
      slowRes = res;
      res.pause();
    });
    await waitFor('the slow stream open', () => slowRes !== null && feed.openStreams === 1, 5000, 20);
    let written = 0;
    await waitFor(
      'the slow client cut off',
      async () => {
        if (feed.openStreams === 0) return true;
        if (written >= 400_000) throw new Error(`still open after ${written} changes`);
        await seedEntries(a, 20_000, `slow${written}`);
        written += 20_000;
        return feed.openStreams === 0;
      },
      120_000,
      10,
    );
    // what it had been sent ends with the hint; the client would reconnect with Last-Event-ID
    let text = '';
    const res = slowRes!;
    await new Promise<void>((resolve) => {
      res.on('data', (c: Buffer) => (text += c.toString()));
      res.on('end', resolve);
      res.resume();
    });
    slow.destroy();
    expect(text.endsWith('retry: 10000\n\n')).toBe(true);
    const ids = [...text.matchAll(/^id: (\d+)$/gm)].map((m) => Number(m[1]));
    expect(ids.length).toBeGreaterThan(0);
    expect(ids.length).toBeLessThan(written);
  }, 180_000);
});
