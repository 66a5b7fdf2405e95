import { randomUUID } from 'node:crypto';
import { ENTRIES } from '@lib/sync';
import { must, statusOf, waitConverged } from '../support/api';
import { Cluster } from '../support/cluster';
import { deadLetters } from '../support/db-queries';
import { LONG, waitFor } from '../support/device-harness';
import { createEntries, createVolumeAndLocation, entryInput } from '../support/fixtures';
import {
  Broker,
  copyText,
  cursor,
  entryRow,
  logSubject,
  sharedMessage,
  stamp,
  stampMs,
  stateMessage,
} from '../support/wire';

/**
 * Input from the wire is validated at the boundary: malformed and forged messages published
 * straight into the stream end in the dead-letter table with a reason, are counted, do not block
 * the queue, and do not crash the device. A message stamped too far in the future is held, not
 * applied, and does not drag the device's clock along.
 */
describe('bad messages', () => {
  let cluster: Cluster;
  let raw: Broker;

  afterEach(async () => {
    await raw?.close();
    await cluster?.dispose();
  });

  it('malformed and forged messages are dead-lettered with a reason, counted, and syncing goes on', async () => {
    cluster = await new Cluster().start();
    const [a, b] = await cluster.startDevices(['a', 'b']);
    raw = await cluster.broker();
    const lib = cluster.libraryId;
    const { locationId } = await createVolumeAndLocation(a, 'a');
    const [victim] = await createEntries(a, locationId, 1);
    const tag = await must(a, 'POST', '/tags', { name: 'genuine', color: 'red' });
    await waitConverged([a, b], { entries: 1, tags: 1 });
    const victimBefore = (await b.req('GET', `/entries/${victim}`)).body;

    const forger = randomUUID();
    const other = randomUUID();
    const now = Date.now();
    const forgedTag = randomUUID();
    const copied = Array.from({ length: 7 }, () => randomUUID());
    const bad: { what: string; subject: string; payload: unknown; reason: RegExp }[] = [
      {
        what: 'not JSON',
        subject: logSubject(lib, 'shared', forger),
        payload: '{"v":1,"kind":"shared",',
        reason: /json|malformed|parse/i,
      },
      {
        what: 'binary garbage',
        subject: logSubject(lib, 'state', forger),
        payload: '\u0001\u0002\u00ff garbage',
        reason: /json|malformed|parse/i,
      },
      {
        what: 'JSON but not a message',
        subject: logSubject(lib, 'shared', forger),
        payload: '[1,2,3]',
        reason: /malformed|expected|invalid|kind/i,
      },
      {
        what: 'a shared message without changes',
        subject: logSubject(lib, 'shared', forger),
        payload: { v: 1, kind: 'shared', library: lib, origin: forger, prev: null },
        reason: /changes|required|malformed/i,
      },
      {
        what: 'an unknown protocol version',
        subject: logSubject(lib, 'shared', forger),
        payload: {
          ...sharedMessage(lib, forger, [
            { hlc: stamp(now, 0, forger), model: 'tags', record_key: forgedTag, op: 'set', fields: { name: 'v2' } },
          ]),
          v: 2,
        },
        reason: /v|version|literal|malformed/i,
      },
      {
        what: 'a field of the wrong type',
        subject: logSubject(lib, 'shared', forger),
        payload: sharedMessage(lib, forger, [
          { hlc: stamp(now, 1, forger), model: 'tags', record_key: forgedTag, op: 'set', fields: { name: 42 } },
        ]),
        reason: /name|string|invalid/i,
      },
      {
        what: 'an unknown model',
        subject: logSubject(lib, 'shared', forger),
        payload: sharedMessage(lib, forger, [
          { hlc: stamp(now, 2, forger), model: 'passwords', record_key: forgedTag, op: 'set', fields: {} },
        ]),
        reason: /model|passwords/i,
      },
      {
        what: "a state message rewriting another device's entry",
        subject: logSubject(lib, 'state', forger),
        payload: stateMessage(lib, forger, {
          from: null,
          to: cursor(stamp(now, 3, forger), 2, victim),
          rows: [
            {
              model: 'entries',
              row: entryRow(a.deviceId, stamp(now, 3, forger), { id: victim, locationId, name: 'hijacked.jpg' }),
            },
          ],
        }),
        reason: /own/i,
      },
      {
        what: "a state message claiming another device's entry id as the sender's own (rows as values)",
        subject: logSubject(lib, 'state', forger),
        payload: stateMessage(lib, forger, {
          from: null,
          to: cursor(stamp(now, 3, forger), 2, victim),
          columns: [
            {
              model: 'entries',
              values: [
                ENTRIES.columns.map(
                  (c) => entryRow(forger, stamp(now, 3, forger), { id: victim, locationId, name: 'claimed.jpg' })[c],
                ),
              ],
            },
          ],
        }),
        reason: /another device|own/i,
      },
      // rows as COPY text (a backlog of one model): checked in the database, refused whole
      ...[
        {
          what: "COPY text claiming another device's entry id as the sender's own",
          rows: [entryRow(forger, stamp(now, 3, forger), { id: victim, locationId, name: 'copied.jpg' })],
          reason: /another device|own/i,
        },
        {
          what: "COPY text of another device's rows",
          rows: [entryRow(a.deviceId, stamp(now, 3, forger), { id: copied[0], locationId, name: 'theirs.jpg' })],
          reason: /own|page of/i,
        },
        {
          what: 'COPY text with a value its column refuses',
          rows: [
            {
              ...entryRow(forger, stamp(now, 3, forger), { id: copied[1], locationId, name: 'x.jpg' }),
              kind: 'symlink',
            },
          ],
          reason: /kind|invalid/i,
        },
        {
          what: 'COPY text that is not rows of the model',
          data: `${copied[2]}\tnot enough columns\n`,
          reason: /invalid|column|data/i,
        },
        {
          what: 'COPY text with more rows than it says',
          rows: [0, 1].map((i) =>
            entryRow(forger, stamp(now, 3, forger), { id: copied[3 + i], locationId, name: `n${i}.jpg` }),
          ),
          count: 1,
          reason: /rows, not/i,
        },
        {
          what: "COPY text with a row past the message's end",
          rows: [entryRow(forger, stamp(now + 60_000, 0, forger), { id: copied[5], locationId, name: 'later.jpg' })],
          reason: /past/i,
        },
        {
          what: 'COPY text beside rows as values',
          rows: [entryRow(forger, stamp(now, 3, forger), { id: copied[6], locationId, name: 'both.jpg' })],
          also: true,
          reason: /both/i,
        },
      ].map((c) => ({
        what: c.what,
        subject: logSubject(lib, 'state', forger),
        payload: {
          ...stateMessage(lib, forger, {
            from: null,
            to: cursor(stamp(now, 3, forger), 2, 'ffffffff-ffff-ffff-ffff-ffffffffffff'),
            copy: {
              model: 'entries',
              rows: c.count ?? c.rows?.length ?? 1,
              data: c.data ?? copyText(ENTRIES.columns, c.rows ?? []),
            },
          }),
          ...(c.also ? { columns: [{ model: 'entries', values: [ENTRIES.columns.map((k) => c.rows![0][k])] }] } : {}),
        },
        reason: c.reason,
      })),
      {
        what: "a tombstone for another device's entry",
        subject: logSubject(lib, 'state', forger),
        payload: stateMessage(lib, forger, {
          from: null,
          to: cursor(stamp(now, 4, forger), 9, victim),
          tombstones: [{ model: 'entries', id: victim, device_id: a.deviceId, version: stamp(now, 4, forger) }],
        }),
        reason: /own/i,
      },
      {
        what: 'a shared change stamped by another device',
        subject: logSubject(lib, 'shared', forger),
        payload: sharedMessage(lib, forger, [
          { hlc: stamp(now, 5, a.deviceId), model: 'tags', record_key: tag.id, op: 'delete', fields: {} },
        ]),
        reason: /origin|stamp|node|forg/i,
      },
      {
        what: 'a subject naming another origin than the payload',
        subject: logSubject(lib, 'shared', forger),
        payload: sharedMessage(lib, other, [
          { hlc: stamp(now, 6, other), model: 'tags', record_key: tag.id, op: 'set', fields: { name: 'spoofed' } },
        ]),
        reason: /origin|subject/i,
      },
      {
        what: "a state message in A's name on another device's subject",
        subject: logSubject(lib, 'state', forger),
        payload: stateMessage(lib, a.deviceId, {
          from: null,
          to: cursor(stamp(now, 7, a.deviceId), 2, victim),
          rows: [
            {
              model: 'entries',
              row: entryRow(a.deviceId, stamp(now, 7, a.deviceId), { id: victim, locationId, name: 'spoofed.jpg' }),
            },
          ],
        }),
        reason: /origin|subject/i,
      },
      {
        what: 'another library in the payload',
        subject: logSubject(lib, 'shared', forger),
        payload: sharedMessage(randomUUID(), forger, [
          {
            hlc: stamp(now, 8, forger),
            model: 'tags',
            record_key: forgedTag,
            op: 'set',
            fields: { name: 'elsewhere' },
          },
        ]),
        reason: /librar/i,
      },
      {
        what: 'a subject without an origin',
        subject: `sync.${lib}.log.shared`,
        payload: sharedMessage(lib, forger, [
          {
            hlc: stamp(now, 9, forger),
            model: 'tags',
            record_key: forgedTag,
            op: 'set',
            fields: { name: 'no origin' },
          },
        ]),
        reason: /origin|subject/i,
      },
    ];
    for (const m of bad) await raw.publish(m.subject, m.payload, undefined, { as: forger });

    // a genuine write after them still arrives: nothing blocks the queue
    await must(a, 'PATCH', `/tags/${tag.id}`, { color: 'green' });
    const fresh = await must(a, 'POST', '/tags', { name: 'written after the forgeries' });
    await waitFor(
      'the genuine writes after the bad messages',
      async () => (await b.req('GET', `/tags/${fresh.id}`)).status === 200,
      LONG,
    );
    await waitConverged([a, b], { entries: 1, tags: 2 });

    for (const d of [a, b]) {
      const letters = await waitFor(
        `${d.config.deviceName} to dead-letter all ${bad.length} messages`,
        async () => {
          const rows = await deadLetters(d.db);
          if (rows.length < bad.length) throw new Error(`${rows.length} dead letters`);
          return rows;
        },
        LONG,
      );
      expect(letters.length).toBe(bad.length);
      // each one, with its subject, its payload and a reason that says what was wrong
      for (const m of bad) {
        const text = typeof m.payload === 'string' ? m.payload : JSON.stringify(m.payload);
        const letter = letters.find((l) => l.payload === text);
        expect({ what: m.what, found: !!letter }).toEqual({ what: m.what, found: true });
        expect({ what: m.what, subject: letter!.subject }).toEqual({ what: m.what, subject: m.subject });
        expect({ what: m.what, reason: letter!.reason }).toEqual({
          what: m.what,
          reason: expect.stringMatching(m.reason),
        });
      }
      expect((await statusOf(d)).deadLetters).toBe(bad.length);
      expect((await d.req('GET', '/health')).status).toBe(200);
      // nothing forged was applied
      expect((await d.req('GET', `/entries/${victim}`)).body).toEqual(victimBefore);
      expect((await d.req('GET', `/tags/${tag.id}`)).body).toEqual({ id: tag.id, name: 'genuine', color: 'green' });
      expect((await d.req('GET', `/tags/${forgedTag}`)).status).toBe(404);
      for (const id of copied) expect((await d.req('GET', `/entries/${id}`)).status).toBe(404);
    }
  });

  it("a device's state message about ids another device owns changes nothing, is rejected, and does not block the owner's later writes", async () => {
    cluster = await new Cluster().start();
    const [a, b] = await cluster.startDevices(['a', 'b']);
    raw = await cluster.broker();
    const lib = cluster.libraryId;
    const { locationId } = await createVolumeAndLocation(a, 'a');
    const [e1, e2, e3, gone] = await createEntries(a, locationId, 4);
    await waitConverged([a, b], { entries: 4 });
    const e3Create = (await a.req('GET', `/entries/${e3}`)).body;

    // F speaks in its own name (device_id = origin), but about A's location and A's entries
    const f = randomUUID();
    const t = Date.now();
    const v = (i: number) => stamp(t, i, f);
    const subject = logSubject(lib, 'state', f);
    // F's stream as B sees it starts after a change B never got: B's watermark of F does not move,
    // so nothing B holds of F counts as seen by everyone (and nothing of it is collected meanwhile)
    const unseen = cursor(stamp(t - 10_000, 0, f), 0, f);
    const forged = [
      stateMessage(lib, f, {
        from: unseen,
        to: cursor(v(1), 9, locationId),
        tombstones: [{ model: 'locations', id: locationId, device_id: f, version: v(1) }],
      }),
      stateMessage(lib, f, {
        from: unseen,
        to: cursor(v(2), 9, e1),
        tombstones: [{ model: 'entries', id: e1, device_id: f, version: v(2) }],
      }),
      stateMessage(lib, f, {
        from: unseen,
        to: cursor(v(3), 2, e2),
        rows: [{ model: 'entries', row: entryRow(f, v(3), { id: e2, locationId, name: 'hijacked.jpg' }) }],
      }),
      stateMessage(lib, f, {
        from: unseen,
        to: cursor(v(4), 9, e3),
        tombstones: [{ model: 'entries', id: e3, device_id: f, version: v(4) }],
      }),
    ];
    for (const m of forged) await raw.publish(subject, m);
    // then a genuine change of F's own: once it is visible, the forgeries before it were handled
    const [fLocation, fEntry] = [randomUUID(), randomUUID()];
    await raw.publish(
      subject,
      stateMessage(lib, f, {
        from: unseen,
        to: cursor(v(5), 2, fEntry),
        rows: [
          {
            model: 'locations',
            row: {
              id: fLocation,
              device_id: f,
              volume_id: null,
              name: 'F',
              path: '/f',
              version: v(5),
              updated_at: new Date(stampMs(v(5))).toISOString(),
            },
          },
          { model: 'entries', row: entryRow(f, v(5), { id: fEntry, locationId: fLocation, name: 'genuine.jpg' }) },
        ],
      }),
    );
    for (const d of [a, b])
      await waitFor(
        `F's genuine entry on ${d.config.deviceName}`,
        async () => (await d.req('GET', `/entries/${fEntry}`)).status === 200,
        LONG,
      );

    // A deletes one of its entries (so B holds a tombstone of A's: B then checks A's rows against tombstones)
    expect((await a.req('DELETE', `/entries/${gone}`)).status).toBe(204);
    await waitFor("A's delete on B", async () => (await b.req('GET', `/entries/${gone}`)).status === 404, LONG);
    // A's later writes to its own rows reach B as usual
    const e4 = await must(a, 'POST', '/entries', entryInput(locationId, 4));
    await must(a, 'PATCH', `/entries/${e1}`, { name: 'patched by its owner.jpg' });
    await waitConverged([a, b], { entries: 5 });
    for (const d of [a, b]) {
      expect((await d.req('GET', `/entries/${e4.id}`)).status).toBe(200);
      expect((await d.req('GET', `/entries/${e1}`)).body.name).toBe('patched by its owner.jpg');
      expect((await d.req('GET', `/entries/${e2}`)).body).toMatchObject({ name: 'f1.jpg', deviceId: a.deviceId });
      expect((await d.req('GET', `/entries/${e3}`)).status).toBe(200);
    }
    // repeating A's own create stays idempotent (200), not "was deleted"
    const { locationId: l3, name, path, kind, sizeBytes, modifiedAt } = e3Create;
    expect(
      (await a.req('POST', '/entries', { id: e3, locationId: l3, name, path, kind, sizeBytes, modifiedAt })).status,
    ).toBe(200);
    // and each forgery was refused and counted
    for (const d of [a, b]) {
      const letters = await waitFor(
        `${d.config.deviceName} to dead-letter the forgeries`,
        async () => {
          const rows = await deadLetters(d.db);
          if (rows.length < forged.length) throw new Error(`${rows.length} dead letters`);
          return rows;
        },
        30_000,
      );
      expect(letters.map((l) => l.reason)).toEqual(forged.map(() => expect.stringMatching(/own/i)));
    }
  });

  it('a payload with NUL bytes is dead-lettered like any other, not retried forever', async () => {
    cluster = await new Cluster().start();
    const [a, b] = await cluster.startDevices(['a', 'b']);
    raw = await cluster.broker();
    const lib = cluster.libraryId;
    const forger = randomUUID();
    const subject = logSubject(lib, 'state', forger);
    // Postgres text cannot hold U+0000: the dead-letter record must still be written
    await raw.publish(subject, '\u0000\u0000 binary \u0000');
    // valid JSON and schema, but strings Postgres cannot store (the API refuses them with a 400):
    // rejected, not retried forever either
    const nulTag = randomUUID();
    await raw.publish(
      logSubject(lib, 'shared', forger),
      sharedMessage(lib, forger, [
        {
          hlc: stamp(Date.now(), 0, forger),
          model: 'tags',
          record_key: nulTag,
          op: 'set',
          fields: { name: 'nul\u0000name' },
        },
      ]),
    );
    const nulEntry = randomUUID();
    const version = stamp(Date.now(), 1, forger);
    await raw.publish(
      logSubject(lib, 'state', forger),
      stateMessage(lib, forger, {
        from: null,
        to: cursor(version, 2, nulEntry),
        rows: [
          {
            model: 'entries',
            row: entryRow(forger, version, { id: nulEntry, locationId: randomUUID(), name: 'nul\u0000.jpg' }),
          },
        ],
      }),
    );
    const tag = await must(a, 'POST', '/tags', { name: 'after the NUL bytes' });
    await waitFor(
      'a genuine write after the NUL bytes',
      async () => (await b.req('GET', `/tags/${tag.id}`)).status === 200,
      LONG,
    );
    for (const d of [a, b]) {
      const letters = await waitFor(
        `${d.config.deviceName} to dead-letter the three messages`,
        async () => {
          const rows = await deadLetters(d.db);
          if (rows.length < 3) throw new Error(`${rows.length} dead letters`);
          return rows;
        },
        30_000, // a dead letter takes milliseconds; a shorter deadline keeps a failure cheap
      );
      expect(letters.map((l) => l.subject).sort()).toEqual(
        [subject, subject, logSubject(lib, 'shared', forger)].sort(),
      );
      expect((await statusOf(d)).deadLetters).toBe(3);
      expect((await d.req('GET', `/tags/${nulTag}`)).status).toBe(404);
      expect((await d.req('GET', `/entries/${nulEntry}`)).status).toBe(404);
    }
  });

  it('a change stamped an hour ahead is held, counted, and does not move the clock; changes within the bound are applied', async () => {
    cluster = await new Cluster().start();
    const d = await cluster.device('drift');
    raw = await cluster.broker();
    const lib = cluster.libraryId;
    const future = randomUUID();
    const [held, near, after] = [randomUUID(), randomUUID(), randomUUID()];
    const subject = logSubject(lib, 'shared', future);
    const hour = 3600_000;
    const maxDrift = d.config.maxClockDriftMs;
    expect(maxDrift).toBeLessThan(hour);

    const aheadStamp = stamp(Date.now() + hour, 0, future);
    await raw.publish(
      subject,
      sharedMessage(lib, future, [
        { hlc: aheadStamp, model: 'tags', record_key: held, op: 'set', fields: { name: 'from the future' } },
      ]),
    );
    const status = await waitFor(
      'the message to be held for clock drift',
      async () => {
        const s = await statusOf(d);
        if (!((s.clockDriftHeld ?? 0) >= 1)) throw new Error(`clockDriftHeld ${s.clockDriftHeld}`);
        return s;
      },
      LONG,
    );
    expect(stampMs(status.hlc)).toBeLessThan(Date.now() + maxDrift);
    expect(status.hlc < aheadStamp).toBe(true);
    expect((await d.req('GET', `/tags/${held}`)).status).toBe(404);

    // a stamp within the bound is applied (and, by the receive rule, advances the clock past it)
    const nearStamp = stamp(Date.now() + 30_000, 0, future);
    await raw.publish(
      subject,
      sharedMessage(lib, future, [
        { hlc: nearStamp, model: 'tags', record_key: near, op: 'set', fields: { name: 'slightly ahead' } },
      ]),
    );
    await waitFor('the near-future change', async () => (await d.req('GET', `/tags/${near}`)).status === 200, LONG);
    const s2 = await statusOf(d);
    expect(s2.hlc > nearStamp).toBe(true);
    expect(stampMs(s2.hlc)).toBeLessThan(Date.now() + maxDrift);
    // an edit made here after seeing it is stamped later, so it wins (the HLC receive rule)
    expect((await must(d, 'PATCH', `/tags/${near}`, { name: 'edited after it' })).name).toBe('edited after it');
    expect((await d.req('GET', `/tags/${near}`)).body.name).toBe('edited after it');
    // the device's own writes keep working, stamped after what it has seen
    const own = await must(d, 'POST', '/tags', { id: after, name: 'local' });
    expect(own.id).toBe(after);
    const clocks = (await d.db.selectFrom('tags').select('clocks').where('id', '=', after).executeTakeFirstOrThrow())
      .clocks as unknown as Record<string, string>;
    expect(clocks.name > nearStamp).toBe(true);
    expect(stampMs(clocks.name)).toBeLessThan(Date.now() + maxDrift);

    // still held, never dead-lettered, the clock never past now + bound
    const s3 = await statusOf(d);
    expect(s3.clockDriftHeld).toBeGreaterThanOrEqual(1);
    expect(stampMs(s3.hlc)).toBeLessThan(Date.now() + maxDrift);
    expect((await d.req('GET', `/tags/${held}`)).status).toBe(404);
    expect(await deadLetters(d.db)).toEqual([]);
  });
});
