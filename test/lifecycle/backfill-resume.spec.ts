import { BackfillItem, must, statusOf, waitConverged, waitPhase } from '../support/api';
import { Cluster } from '../support/cluster';
import { dropTestDatabases } from '../support/databases';
import { queryDb, waitRows } from '../support/db-queries';
import { LONG, waitFor } from '../support/device-harness';
import { createTag, seedEntries } from '../support/fixtures';
import { freePort } from '../support/nats-server';
import { Broker } from '../support/wire';

/**
 * Issue 4, "Backfill of a new device": a new device (a real process, so it can be SIGKILLed)
 * backfills 50,000 entries held by two peers, is killed in the middle of the entries of one owner,
 * and resumes from exactly the checkpoint stored in its database, from the other peer (its first
 * source is gone too): it pulls only the rows after the checkpoint, and finishes identical to its
 * peers. Changes made while it is down wait in its durable consumer and are applied after.
 */
describe('backfill of a new device, killed midway', () => {
  const cluster = new Cluster({ heartbeatIntervalMs: 500 });
  let broker: Broker;

  beforeAll(async () => {
    await cluster.start();
    broker = await cluster.broker();
  });
  afterAll(async () => {
    await cluster.dispose();
    await dropTestDatabases();
  });

  it('resumes from its stored checkpoint after SIGKILL and finishes identical to its peers', async () => {
    // --- two peers: A owns 30,000 entries, B owns 20,000; shared tags, metadata and memberships
    const a = await cluster.device('a');
    const b = await cluster.device('b');
    // written at once on both: each owner's entries reach the other live
    const tags: string[] = [];
    const [seededA, seededB] = await Promise.all([
      seedEntries(a, 30_000, 'a'),
      seedEntries(b, 20_000, 'b'),
      (async () => {
        for (let i = 0; i < 5; i++)
          tags.push(await createTag(a, `a-tag-${i}`, 'red'), await createTag(b, `b-tag-${i}`, null));
      })(),
    ]);
    // counted first (cheap), compared by digest once (a digest reads every row)
    await waitRows([a, b], 'entries', 50_000, 2 * LONG);
    await waitRows([a, b], 'tags', 10);
    for (let i = 0; i < 20; i++) {
      const entry = i % 2 ? seededA.ids[i * 1000] : seededB.ids[i * 500];
      const writer = i % 3 ? a : b;
      await must(writer, 'PUT', `/entries/${entry}/metadata`, { favorite: i % 2 === 0, notes: `note ${i}` });
      await must(writer, 'PUT', `/tags/${tags[i % tags.length]}/entries/${entry}`);
    }
    await waitRows([a, b], 'user_metadata', 20);
    await waitRows([a, b], 'tag_entries', 20);
    const expected = { entries: 50_000, locations: 2, tags: 10, user_metadata: 20, tag_entries: 20 };

    // --- C joins, slowed down between backfill pages so that it can be killed in the middle
    const c = await cluster.process('c', { SYNC_BACKFILL_PAUSE_MS: '400' });
    await c.start(await freePort());
    const inProgress = await waitFor(
      "C's checkpoint inside some owner's entries",
      async () => {
        const rows = await queryDb<{ key: string; value: string }>(
          c.databaseUrl,
          "select key, value from sync_checkpoints where key like 'backfill:owned:%:entries' and value <> 'done'",
        );
        return rows[0];
      },
      LONG,
      20,
    );
    expect(await c.stop('SIGKILL')).toBe('SIGKILL');

    // --- what the killed device had stored
    const checkpoints = new Map(
      (
        await queryDb<{ key: string; value: string }>(
          c.databaseUrl,
          "select key, value from sync_checkpoints where key like 'backfill%'",
        )
      ).map((r) => [r.key, r.value]),
    );
    expect(checkpoints.get('backfill')).toBeUndefined(); // not finished
    expect(checkpoints.has('backfill:plan')).toBe(true);
    const owner = inProgress.key.split(':')[2];
    const stored = checkpoints.get(inProgress.key)!;
    expect(stored).not.toBe('done');
    expect(stored).toMatch(/^\d{15}-\d{6}-[0-9a-f-]{36}\|2\|[0-9a-f-]{36}$/);
    const ownerTotal = owner === a.deviceId ? 30_000 : 20_000;
    expect([a.deviceId, b.deviceId]).toContain(owner);
    const held = async (deviceOwner: string) =>
      Number(
        (await queryDb(c.databaseUrl, 'select count(*)::int as n from entries where device_id = $1', [deviceOwner]))[0]
          .n,
      );
    const heldAtKill = await held(owner);
    expect(heldAtKill).toBeGreaterThan(0);
    expect(heldAtKill).toBeLessThan(ownerTotal);
    // the rows C holds of that owner are exactly those up to the checkpoint, no more, no less
    const [version, , id] = stored.split('|');
    const upTo = await queryDb(
      c.databaseUrl,
      'select count(*)::int as n from entries where device_id = $1 and (version, id) <= ($2, $3::uuid)',
      [owner, version, id],
    );
    expect(Number(upTo[0].n)).toBe(heldAtKill);
    const other = owner === a.deviceId ? b.deviceId : a.deviceId;
    const otherKey = `backfill:owned:${other}:entries`;
    const otherAtKill = checkpoints.get(otherKey) ?? null;
    const otherHeldAtKill = await held(other);

    // --- the peer C was pulling from goes away too: C has to resume from the other one
    const plan = JSON.parse(checkpoints.get('backfill:plan')!) as { source: string };
    expect([a.deviceId, b.deviceId]).toContain(plan.source);
    const source = plan.source === a.deviceId ? a : b;
    const remaining = source === a ? b : a;
    await cluster.close(source);

    // --- while C is down the remaining peer writes: its changes wait in C's durable consumer
    // (new entries only if it is not the owner being resumed, whose count must stay exact)
    const late = remaining.deviceId === owner ? 0 : 100;
    if (late) await seedEntries(remaining, late, 'late');
    await must(remaining, 'PUT', `/entries/${seededA.ids[7]}/metadata`, {
      favorite: true,
      hidden: false,
      notes: 'late',
    });
    await createTag(remaining, 'late-tag');
    await waitFor(
      "the live changes to wait in C's durable consumer",
      async () => (await broker.pending(c.deviceId)) >= (late ? 2 : 1),
      LONG,
    );

    // --- C again: same database, same DEVICE_ID, no pause
    c.env.SYNC_BACKFILL_PAUSE_MS = '0';
    await c.start(await freePort());
    await waitPhase(c, 'ready', 2 * LONG);
    const status = await statusOf(c);
    expect(status.backfill?.source).toBe(remaining.deviceId);
    const items = status.backfill?.items ?? [];
    const item = (o: string, model: string): BackfillItem => {
      const found = items.find((i) => i.owner === o && i.model === model);
      if (!found) throw new Error(`no backfill item ${o}/${model} in ${JSON.stringify(status.backfill)}`);
      return found;
    };
    // resumed from exactly the stored checkpoint, and pulled only the rows after it
    expect(item(owner, 'entries').startedAfter).toBe(stored);
    expect(item(owner, 'entries').done).toBe(ownerTotal - heldAtKill);
    // the other owner's entries: not pulled again if they were complete, else resumed likewise
    expect(item(other, 'entries').startedAfter ?? null).toBe(otherAtKill);
    if (otherAtKill === 'done') expect(item(other, 'entries').done).toBe(0);
    if (otherAtKill === null) expect(otherHeldAtKill).toBe(0);
    // models finished before the kill are not pulled again
    for (const [key, value] of checkpoints) {
      const m = /^backfill:owned:([^:]+):([^:]+)$/.exec(key);
      if (m && value === 'done') expect(item(m[1], m[2])).toMatchObject({ startedAfter: 'done', done: 0 });
    }
    // finished: checkpoints cleared, marked done
    const after = await queryDb<{ key: string; value: string }>(
      c.databaseUrl,
      "select key, value from sync_checkpoints where key like 'backfill%'",
    );
    expect(after).toEqual([{ key: 'backfill', value: 'done' }]);

    // identical to both peers (the first source back too), including what was written meanwhile
    const back = await cluster.restart(source);
    await waitRows([back, remaining, c], 'entries', 50_000 + late);
    await waitConverged(
      [back, remaining, c],
      { ...expected, entries: 50_000 + late, locations: late ? 3 : 2, tags: 11, user_metadata: 21 },
      LONG,
    );
    await waitPhase(c, 'ready', 15_000);
  });
});
