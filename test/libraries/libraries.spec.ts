import { randomBytes, randomUUID } from 'node:crypto';
import { sql } from 'kysely';
import { Api, must, statusOf, waitPhase } from '../support/api';
import { Cluster } from '../support/cluster';
import { HttpResult, LONG, waitFor } from '../support/device-harness';
import { createTag } from '../support/fixtures';

/**
 * Several libraries on one device (API.md "Libraries"): each synced only with its own members,
 * opened, closed, reopened and left at runtime, on one database and one NATS connection.
 */

/** A device's API for one of its libraries (routes under /libraries/:libraryId). */
function lib(d: Api, libraryId: string): Api {
  return {
    url: `${d.url}/libraries/${libraryId}`,
    req: <T = any>(method: string, path: string, body?: unknown): Promise<HttpResult<T>> =>
      d.req<T>(method, `/libraries/${libraryId}${path}`, body),
  };
}

async function tagNames(p: Api): Promise<string[]> {
  const r = await must<{ items: { name: string }[] }>(p, 'GET', '/tags?limit=1000');
  return r.items.map((t) => t.name).sort();
}

describe('libraries on one device', () => {
  let cluster: Cluster;
  beforeAll(async () => {
    cluster = await new Cluster().start();
  });
  afterAll(async () => {
    await cluster?.dispose();
  });

  it('a second library founded at runtime syncs with its own members only; invites join it; the default library is untouched', async () => {
    const [a, b] = await cluster.startDevices(['lib-a', 'lib-b']);
    const c = await cluster.device('lib-c', { libraryId: randomUUID() }); // a device of another library

    // A founds a second library; B joins it by invite; C joins it with nothing in common otherwise
    const created = await a.req('POST', '/libraries', { name: 'work' });
    expect(created.status).toBe(201);
    const work: string = created.body.libraryId;
    expect(created.body).toMatchObject({ name: 'work', open: true, default: false });
    await waitPhase(lib(a, work));
    const invite = await must(lib(a, work), 'POST', '/sync/invites', {});
    const joined = await c.req('POST', '/libraries', { invite: invite.token });
    expect(joined.status).toBe(201);
    expect(joined.body.libraryId).toBe(work);
    await waitPhase(lib(c, work));

    // the same request again: 200, nothing new
    expect((await c.req('POST', '/libraries', { libraryId: work })).status).toBe(200);

    await createTag(lib(a, work), 'work-tag');
    await createTag(a, 'home-tag'); // the default library (A and B)
    await createTag(lib(c, work), 'from-c');
    await waitFor('C to hold the work tags', async () => (await tagNames(lib(c, work))).length === 2, LONG);
    await waitFor('A to hold C’s tag', async () => (await tagNames(lib(a, work))).includes('from-c'), LONG);
    await waitFor('B to hold the home tag', async () => (await tagNames(b)).includes('home-tag'), LONG);

    expect(await tagNames(lib(c, work))).toEqual(['from-c', 'work-tag']);
    expect(await tagNames(a)).toEqual(['home-tag']); // unprefixed: A's default library
    expect(await tagNames(lib(a, a.libraryId))).toEqual(['home-tag']);
    expect(await tagNames(b)).toEqual(['home-tag']);
    expect(await tagNames(c)).toEqual([]); // C's own default library
    expect((await b.req('GET', `/libraries/${work}/tags`)).status).toBe(404); // B is not in it

    const list = await must(a, 'GET', '/libraries');
    expect(list.nextCursor).toBeNull();
    expect(list.items).toEqual(
      expect.arrayContaining([
        expect.objectContaining({ libraryId: a.libraryId, open: true, default: true, phase: 'ready' }),
        expect.objectContaining({ libraryId: work, name: 'work', open: true, default: false }),
      ]),
    );
    const status = await statusOf(lib(a, work));
    expect(status.libraryId).toBe(work);
    expect(status.peers.map((p) => p.deviceId)).toEqual([c.deviceId]);

    // the second library lives in a schema of A's one database, not in a database of its own
    const schemas = await sql<{ n: string }>`select nspname as n from pg_namespace where nspname like 'lib_%'`.execute(
      a.db,
    );
    expect(schemas.rows.map((r) => r.n)).toContain(`lib_${work.replace(/-/g, '')}`);

    // each library has its status page under its prefix (the device's own routes stay as they are)
    const page = await fetch(`${a.url}/libraries/${work}/`);
    expect(page.status).toBe(200);
    expect(page.headers.get('content-type')).toMatch(/text\/html/);
    expect(await page.text()).toContain(work);
    // the device's metrics carry both libraries
    const metrics = await fetch(`${a.url}/metrics`).then((r) => r.text());
    expect(metrics).toContain(`library="${a.libraryId}"`);
    expect(metrics).toContain(`library="${work}"`);
  });

  it('close, writes meanwhile, reopen and catch up; closed survives a restart; bad input is refused and the device goes on', async () => {
    const a = await cluster.device('close-a');
    const b = await cluster.device('close-b');
    const other = randomUUID();
    const key = randomBytes(32).toString('base64');
    // a second library both hold, joined with a pre-shared key
    expect((await a.req('POST', '/libraries', { libraryId: other, key })).status).toBe(201);
    expect((await b.req('POST', '/libraries', { libraryId: other, key })).status).toBe(201);
    await waitPhase(lib(a, other));
    await waitPhase(lib(b, other));

    // writes racing the close: each one either commits (and syncs once reopened) or gets 409
    const racing = Array.from({ length: 40 }, (_, i) =>
      b.req('POST', `/libraries/${other}/tags`, { name: `race-${i}` }),
    );
    const closing = b.req('POST', `/libraries/${other}/close`);
    const raced = await Promise.all(racing);
    const closed = await closing;
    expect(raced.every((r) => r.status === 201 || r.status === 409)).toBe(true);
    const committed = raced.filter((r) => r.status === 201).map((r) => r.body.name as string);
    expect(closed.status).toBe(200);
    expect(closed.body).toMatchObject({ libraryId: other, open: false });
    const refused = await b.req('GET', `/libraries/${other}/tags`);
    expect(refused.status).toBe(409);
    expect(refused.body.message).toMatch(/closed/);

    // while B's "other" is closed: A writes in it, and B's default library goes on syncing
    await createTag(lib(a, other), 'while-closed');
    await createTag(a, 'default-meanwhile');
    await waitFor(
      'B to get the default library tag',
      async () => (await tagNames(b)).includes('default-meanwhile'),
      LONG,
    );

    // the closed state survives a restart
    const b2 = await cluster.restart(b);
    const listed = await must(b2, 'GET', '/libraries');
    expect(listed.items.find((l: { libraryId: string }) => l.libraryId === other)).toMatchObject({ open: false });
    expect((await b2.req('GET', `/libraries/${other}/tags`)).status).toBe(409);

    // reopening catches up with what was written meanwhile; opening twice is fine
    expect((await b2.req('POST', `/libraries/${other}/open`)).status).toBe(200);
    expect((await b2.req('POST', `/libraries/${other}/open`)).status).toBe(200);
    await waitFor(
      'B to catch up after reopening',
      async () => (await tagNames(lib(b2, other))).includes('while-closed'),
      LONG,
    );
    // and what B committed while the close raced it reaches A
    await waitFor(
      'A to hold every write B committed during the close',
      async () => {
        const names = await tagNames(lib(a, other));
        return committed.every((n) => names.includes(n));
      },
      LONG,
    );
    const onB = await tagNames(lib(b2, other));
    expect(onB.filter((n) => n.startsWith('race-')).sort()).toEqual([...committed].sort());

    // bad input: each with a clear message, nothing changes
    const bad: [string, string, unknown, number, RegExp][] = [
      ['GET', '/libraries/not-a-uuid/tags', undefined, 400, /uuid/],
      ['GET', `/libraries/${randomUUID()}/tags`, undefined, 404, /not on this device/],
      ['POST', `/libraries/${randomUUID()}/open`, undefined, 404, /library/],
      ['POST', '/libraries/not-a-uuid/close', undefined, 400, /uuid/],
      ['POST', '/libraries', { libraryId: randomUUID(), key: 'short' }, 400, /key/],
      ['POST', '/libraries', { invite: 'not-an-invite' }, 400, /invite/],
      ['POST', '/libraries', { libraryId: 'nope' }, 400, /libraryId/],
      ['POST', '/libraries', { key, invite: 'x' }, 400, /invite|key/],
    ];
    for (const [method, path, body, status, message] of bad) {
      const r = await b2.req(method, path, body);
      expect([path, r.status]).toEqual([path, status]);
      expect(r.body.message).toMatch(message);
    }
    expect((await must(b2, 'GET', '/libraries')).items).toHaveLength(2);
    expect((await b2.req('GET', '/health')).status).toBe(200);
  });

  it('leaving a library removes the device from its members and deletes its data here', async () => {
    const a = await cluster.device('leave-a');
    const b = await cluster.device('leave-b');
    const shared = randomUUID();
    const key = randomBytes(32).toString('base64');
    for (const d of [a, b]) expect((await d.req('POST', '/libraries', { libraryId: shared, key })).status).toBe(201);
    await Promise.all([waitPhase(lib(a, shared)), waitPhase(lib(b, shared))]);
    await createTag(lib(a, shared), 'before-leaving');
    await waitFor('B to hold the tag', async () => (await tagNames(lib(b, shared))).includes('before-leaving'), LONG);

    const left = await b.req('DELETE', `/libraries/${shared}`);
    expect(left.status).toBe(200);
    expect(left.body).toEqual({ announced: true });
    expect((await b.req('GET', `/libraries/${shared}/tags`)).status).toBe(404);
    expect((await must(b, 'GET', '/libraries')).items.map((l: { libraryId: string }) => l.libraryId)).toEqual([
      b.libraryId,
    ]);
    const schema = `lib_${shared.replace(/-/g, '')}`;
    const gone = await sql<{
      n: number;
    }>`select count(*)::int as n from pg_namespace where nspname = ${schema}`.execute(b.db);
    expect(gone.rows[0].n).toBe(0);

    // A takes the removal: B is no longer its peer, and the key moved on to an epoch B never had
    await waitFor(
      'A to see B removed',
      async () => {
        const s = await statusOf(lib(a, shared));
        return !s.peers.some((p) => p.deviceId === b.deviceId) && s.keyEpoch > 0;
      },
      LONG,
    );
    // B's default library is untouched
    expect((await b.req('GET', '/sync/status')).status).toBe(200);
  });

  it('a database from before libraries is adopted in place as the default library', async () => {
    const a = await cluster.device('legacy-a');
    await createTag(a, 'kept');
    const db = a.config.databaseUrl!;
    const id = a.deviceId;
    await cluster.close(a);
    // what a device of the previous version left: its library's rows, no list of libraries
    const { Client } = await import('pg');
    const c = new Client({ connectionString: db });
    await c.connect();
    await c.query('delete from device_libraries');
    await c.end();
    const again = await cluster.device('legacy-a', { databaseUrl: db, deviceId: id });
    expect(again.libraryId).toBe(a.libraryId);
    expect(await tagNames(again)).toContain('kept');
    expect((await must(again, 'GET', '/libraries')).items).toEqual([
      expect.objectContaining({ libraryId: a.libraryId, open: true, default: true }),
    ]);
  });
});
