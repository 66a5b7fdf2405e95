import { randomUUID } from 'node:crypto';
import { digestOf } from '../support/api';
import { Cluster } from '../support/cluster';
import { deadLetters, sharedRows } from '../support/db-queries';
import type { TestDevice } from '../support/device-harness';
import { LONG, waitFor } from '../support/device-harness';
import { Broker, cursor, entryRow, logSubject, sharedMessage, stamp, stateMessage, WireChange } from '../support/wire';

/**
 * Delivery is at-least-once and its order is not guaranteed across origins: the same changes
 * delivered in different orders, duplicated or redelivered late must end in the same state. The
 * messages are crafted as a foreign device would send them (transport/messages.ts) and published
 * straight into the library's stream.
 */

/** A deterministic shuffle (the order must differ from forward and reverse, and be reproducible). */
function shuffled<T>(items: readonly T[], seed: number): T[] {
  const out = [...items];
  let s = seed;
  for (let i = out.length - 1; i > 0; i--) {
    s = (s * 1103515245 + 12345) % 2147483648;
    const j = s % (i + 1);
    [out[i], out[j]] = [out[j], out[i]];
  }
  return out;
}

describe('delivery order, duplicates and redelivery', () => {
  let cluster: Cluster;
  let raw: Broker;

  afterEach(async () => {
    await raw?.close();
    await cluster?.dispose();
  });

  it('the same shared changes delivered in three different orders end in the same state', async () => {
    cluster = await new Cluster().start();
    // one device per library: each library has its own stream, so each device sees its own order
    const libraries = [randomUUID(), randomUUID(), randomUUID()];
    const devices = await Promise.all(libraries.map((libraryId, k) => cluster.device(`order${k}`, { libraryId })));
    raw = await cluster.broker();

    const [f1, f2] = [randomUUID(), randomUUID()];
    const [tag, gone, album, entry] = [randomUUID(), randomUUID(), randomUUID(), randomUUID()];
    const t0 = Date.now() - 60_000;
    const at = (dt: number, logical: number, node: string) => stamp(t0 + dt, logical, node);
    const set = (origin: string, hlc: string, model: string, key: string, fields: Record<string, unknown>) => ({
      origin,
      change: { hlc, model, record_key: key, op: 'set' as const, fields },
    });
    const del = (origin: string, hlc: string, model: string, key: string) => ({
      origin,
      change: { hlc, model, record_key: key, op: 'delete' as const, fields: {} },
    });
    const tie = [f1, f2].sort()[1]; // the same (physical, logical) on both origins: the greater node id wins
    const changes: { origin: string; change: WireChange }[] = [
      set(f1, at(0, 0, f1), 'tags', tag, { name: 'first', color: 'red' }),
      set(f2, at(1, 0, f2), 'tags', tag, { name: `tie from ${f2}` }),
      set(f1, at(1, 0, f1), 'tags', tag, { name: `tie from ${f1}` }),
      set(f1, at(2, 0, f1), 'tags', tag, { color: 'blue' }),
      set(f2, at(2, 1, f2), 'tags', tag, { color: 'green' }),
      set(f1, at(0, 1, f1), 'tags', gone, { name: 'gone', color: null }),
      del(f2, at(3, 0, f2), 'tags', gone),
      set(f1, at(5, 0, f1), 'tags', gone, { name: 'edited after the delete' }),
      set(f2, at(0, 2, f2), 'albums', album, { name: 'album', description: 'd1' }),
      set(f1, at(4, 0, f1), 'albums', album, { description: 'd2' }),
      set(f1, at(0, 3, f1), 'user_metadata', entry, { favorite: true }),
      set(f2, at(6, 0, f2), 'user_metadata', entry, { favorite: false, notes: 'n2' }),
      set(f1, at(1, 5, f1), 'user_metadata', entry, { hidden: true }),
      set(f1, at(0, 4, f1), 'tag_entries', `${tag}:${entry}`, { present: true }),
      set(f2, at(7, 0, f2), 'tag_entries', `${tag}:${entry}`, { present: false }),
      set(f1, at(6, 9, f1), 'tag_entries', `${tag}:${entry}`, { present: true }),
      set(f2, at(2, 2, f2), 'album_entries', `${album}:${entry}`, { present: false }),
      set(f1, at(8, 0, f1), 'album_entries', `${album}:${entry}`, { present: true }),
    ];
    const orders = [changes, [...changes].reverse(), shuffled(changes, 42)];
    expect(orders[2]).not.toEqual(orders[0]);
    expect(orders[2]).not.toEqual(orders[1]);
    for (const [k, order] of orders.entries()) {
      for (const { origin, change } of order) {
        await raw.publish(logSubject(libraries[k], 'shared', origin), sharedMessage(libraries[k], origin, [change]));
      }
    }

    // every record ends at the greatest stamp it was given, on every device
    const newest = new Map<string, string>();
    for (const { change } of changes)
      newest.set(
        `${change.model}/${change.record_key}`,
        [newest.get(`${change.model}/${change.record_key}`) ?? '', change.hlc].sort()[1],
      );
    const keyOf = (table: string, r: Record<string, unknown>) =>
      `${table}/${table === 'user_metadata' ? r.entry_id : table === 'tag_entries' ? `${r.tag_id}:${r.entry_id}` : table === 'album_entries' ? `${r.album_id}:${r.entry_id}` : r.id}`;
    const tables = ['tags', 'albums', 'user_metadata', 'tag_entries', 'album_entries'] as const;
    const state = async (d: TestDevice) =>
      Object.fromEntries(await Promise.all(tables.map(async (t) => [t, await sharedRows(d.db, t)] as const)));
    for (const d of devices) {
      await waitFor(
        `${d.config.deviceName} to apply every change`,
        async () => {
          const s = await state(d);
          const reached = tables.flatMap((t) => s[t].map((r) => [keyOf(t, r), r.updated_hlc] as const));
          const missing = [...newest].filter(([key, hlc]) => !reached.some(([k, h]) => k === key && h === hlc));
          if (missing.length) throw new Error(`not yet at the newest stamp: ${missing.map(([k]) => k).join(', ')}`);
          return true;
        },
        LONG,
      );
    }

    const states = await Promise.all(devices.map(state));
    expect(states[1]).toEqual(states[0]);
    expect(states[2]).toEqual(states[0]);
    const digests = await Promise.all(devices.map(digestOf));
    expect(digests[1]).toEqual(digests[0]);
    expect(digests[2]).toEqual(digests[0]);

    // and that state is the one the rules give
    const s = states[0];
    const row = (t: (typeof tables)[number], key: string) => s[t].find((r) => keyOf(t, r) === `${t}/${key}`)!;
    expect(row('tags', tag)).toMatchObject({ name: `tie from ${tie}`, color: 'green', deleted_hlc: null });
    expect(row('tags', gone).deleted_hlc).toBe(at(3, 0, f2));
    expect(row('albums', album)).toMatchObject({ name: 'album', description: 'd2' });
    expect(row('user_metadata', entry)).toMatchObject({ favorite: false, hidden: true, notes: 'n2' });
    expect(row('tag_entries', `${tag}:${entry}`).present).toBe(false);
    expect(row('album_entries', `${album}:${entry}`).present).toBe(true);
    for (const d of devices) {
      expect((await d.req('GET', `/tags/${tag}`)).body).toEqual({ id: tag, name: `tie from ${tie}`, color: 'green' });
      expect((await d.req('GET', `/tags/${gone}`)).status).toBe(404);
      expect((await d.req('GET', `/albums/${album}`)).body).toEqual({ id: album, name: 'album', description: 'd2' });
      expect(await deadLetters(d.db)).toEqual([]);
    }
  });

  it('a shared change delivered twice (deduplication bypassed) is applied once, and an older one never wins', async () => {
    cluster = await new Cluster().start();
    const d = await cluster.device('dup');
    raw = await cluster.broker();
    const lib = cluster.libraryId;
    const f = randomUUID();
    const [tag, sentinel1, sentinel2] = [randomUUID(), randomUUID(), randomUUID()];
    const t0 = Date.now() - 1000;
    const one = sharedMessage(lib, f, [
      { hlc: stamp(t0, 0, f), model: 'tags', record_key: tag, op: 'set', fields: { name: 'one', color: 'red' } },
    ]);
    const two = sharedMessage(
      lib,
      f,
      [{ hlc: stamp(t0 + 1, 0, f), model: 'tags', record_key: tag, op: 'set', fields: { name: 'two' } }],
      stamp(t0, 0, f),
    );
    const subject = logSubject(lib, 'shared', f);

    // JetStream drops a repeated Nats-Msg-Id within the stream's duplicate window
    const first = await raw.publish(subject, one, 'msg-one');
    expect(await raw.publish(subject, one, 'msg-one')).toEqual({ seq: first.seq, duplicate: true });
    await raw.publish(subject, two, 'msg-two');
    await waitFor('the tag at "two"', async () => (await d.req('GET', `/tags/${tag}`)).body?.name === 'two', LONG);
    const before = (await sharedRows(d.db, 'tags')).find((r) => r.id === tag);
    expect(before).toMatchObject({
      name: 'two',
      color: 'red',
      clocks: { name: stamp(t0 + 1, 0, f), color: stamp(t0, 0, f) },
    });

    // the same messages again under new ids (a republish after a lost PubAck, a redelivery)
    await raw.publish(subject, two, 'msg-two-again');
    await raw.publish(subject, one, 'msg-one-again');
    await raw.publish(
      subject,
      sharedMessage(
        lib,
        f,
        [{ hlc: stamp(t0 + 2, 0, f), model: 'tags', record_key: sentinel1, op: 'set', fields: { name: 's1' } }],
        stamp(t0 + 1, 0, f),
      ),
    );
    await waitFor(
      'the sentinel after the duplicates',
      async () => (await d.req('GET', `/tags/${sentinel1}`)).status === 200,
      LONG,
    );
    expect((await sharedRows(d.db, 'tags')).find((r) => r.id === tag)).toEqual(before);
    expect((await d.req('GET', `/tags/${tag}`)).body).toEqual({ id: tag, name: 'two', color: 'red' });

    // a batch repeating one change twice, and a delete delivered twice
    const del = { hlc: stamp(t0 + 3, 0, f), model: 'tags', record_key: tag, op: 'delete' as const, fields: {} };
    await raw.publish(subject, sharedMessage(lib, f, [del, del]));
    await raw.publish(subject, sharedMessage(lib, f, [del]));
    await raw.publish(
      subject,
      sharedMessage(lib, f, [
        { hlc: stamp(t0 + 4, 0, f), model: 'tags', record_key: sentinel2, op: 'set', fields: { name: 's2' } },
      ]),
    );
    await waitFor('the second sentinel', async () => (await d.req('GET', `/tags/${sentinel2}`)).status === 200, LONG);
    expect((await d.req('GET', `/tags/${tag}`)).status).toBe(404);
    expect((await sharedRows(d.db, 'tags')).find((r) => r.id === tag)).toEqual({
      ...before,
      deleted_hlc: del.hlc,
      updated_hlc: del.hlc,
    });
    expect(await deadLetters(d.db)).toEqual([]);
  });

  it('an owned state redelivered late, or out of order, never moves a row back in time', async () => {
    cluster = await new Cluster().start();
    const [lib1, lib2] = [cluster.libraryId, randomUUID()];
    const [d1, d2] = await Promise.all([
      cluster.device('late', { libraryId: lib1 }),
      cluster.device('reordered', { libraryId: lib2 }),
    ]);
    raw = await cluster.broker();
    const owner = randomUUID();
    const [location, e1, e2, e3] = [randomUUID(), randomUUID(), randomUUID(), randomUUID()];
    const t0 = Date.now() - 1000;
    const v = (i: number) => stamp(t0 + i, 0, owner);
    const locationRow = {
      id: location,
      device_id: owner,
      volume_id: null,
      name: 'L',
      path: '/l',
      version: v(1),
      updated_at: new Date(t0 + 1).toISOString(),
    };
    const s1 = (lib: string) =>
      stateMessage(lib, owner, {
        from: null,
        to: cursor(v(1), 2, e1),
        rows: [
          { model: 'locations', row: locationRow },
          { model: 'entries', row: entryRow(owner, v(1), { id: e1, locationId: location, name: 'old.jpg' }) },
        ],
      });
    const s2 = (lib: string) =>
      stateMessage(lib, owner, {
        from: cursor(v(1), 2, e1),
        to: cursor(v(2), 2, e1),
        rows: [{ model: 'entries', row: entryRow(owner, v(2), { id: e1, locationId: location, name: 'new.jpg' }) }],
      });
    const s3 = (lib: string) =>
      stateMessage(lib, owner, {
        from: cursor(v(2), 2, e1),
        to: cursor(v(3), 2, e2),
        rows: [
          { model: 'entries', row: entryRow(owner, v(3), { id: e2, locationId: location, name: 'sentinel.jpg' }) },
        ],
      });
    const s4 = (lib: string) =>
      stateMessage(lib, owner, {
        from: cursor(v(3), 2, e2),
        to: cursor(v(4), 9, e1),
        tombstones: [{ model: 'entries', id: e1, device_id: owner, version: v(4) }],
      });
    const s5 = (lib: string) =>
      stateMessage(lib, owner, {
        from: cursor(v(4), 9, e1),
        to: cursor(v(5), 2, e3),
        rows: [
          { model: 'entries', row: entryRow(owner, v(5), { id: e3, locationId: location, name: 'sentinel2.jpg' }) },
        ],
      });
    const publish = (lib: string, msg: Record<string, unknown>) => raw.publish(logSubject(lib, 'state', owner), msg);
    const nameOf = async (d: TestDevice, id: string) => (await d.req('GET', `/entries/${id}`)).body?.name;

    // in order on d1, then the first state again, late
    await publish(lib1, s1(lib1));
    await publish(lib1, s2(lib1));
    await waitFor('e1 at its second version', async () => (await nameOf(d1, e1)) === 'new.jpg', LONG);
    const newest = (await d1.req('GET', `/entries/${e1}`)).body;
    await publish(lib1, s1(lib1));
    await publish(lib1, s3(lib1));
    await waitFor('the sentinel', async () => (await nameOf(d1, e2)) === 'sentinel.jpg', LONG);
    expect((await d1.req('GET', `/entries/${e1}`)).body).toEqual(newest);

    // newest first on d2: the older state arriving afterwards changes nothing
    await publish(lib2, s2(lib2));
    await publish(lib2, s1(lib2));
    await publish(lib2, s3(lib2));
    await waitFor('the sentinel on d2', async () => (await nameOf(d2, e2)) === 'sentinel.jpg', LONG);
    expect((await d2.req('GET', `/entries/${e1}`)).body).toEqual(newest);
    expect((await d2.req('GET', `/locations/${location}`)).body.name).toBe('L');

    // a delete, then the row's older state redelivered: it stays deleted
    await publish(lib1, s4(lib1));
    await waitFor('e1 deleted', async () => (await d1.req('GET', `/entries/${e1}`)).status === 404, LONG);
    await publish(lib1, s2(lib1));
    await publish(lib1, s1(lib1));
    await publish(lib1, s5(lib1));
    await waitFor('the second sentinel', async () => (await nameOf(d1, e3)) === 'sentinel2.jpg', LONG);
    expect((await d1.req('GET', `/entries/${e1}`)).status).toBe(404);
    expect((await d1.list(`/entries?deviceId=${owner}`)).map((e) => e.name).sort()).toEqual([
      'sentinel.jpg',
      'sentinel2.jpg',
    ]);
    for (const d of [d1, d2]) expect(await deadLetters(d.db)).toEqual([]);
  });
});
