import { randomUUID } from 'node:crypto';
import { createTestDatabase, dropTestDatabases } from '../support/databases';
import { startTestDevice, TestDevice } from '../support/device-harness';
import { waitPhase } from '../support/api';
import { freePort } from '../support/nats-server';
import { entryInput, MODES, ownLocation, startApiDevice } from './api-fixtures';

/** GET /health, /sync/status and /sync/digest (docs/http.md "Health and sync state"). */

afterAll(() => dropTestDatabases());

const MODELS = ['volumes', 'locations', 'entries', 'tags', 'albums', 'user_metadata', 'tag_entries', 'album_entries'];

describe.each(MODES)('health and sync state (%s)', (mode) => {
  let d: TestDevice;

  beforeAll(async () => {
    d = await startApiDevice(mode);
  });
  afterAll(async () => {
    await d?.close();
  });

  it('GET /health is 200 while the database answers', async () => {
    const r = await d.req('GET', '/health');
    expect(r.status).toBe(200);
    expect(r.body).toEqual({ status: 'ok', database: 'ok', sync: 'disabled', nats: 'disabled' });
  });

  it('GET /health/live is 200, and /health/ready is 200 with sync disabled', async () => {
    const live = await d.req('GET', '/health/live');
    expect(live.status).toBe(200);
    expect(live.body).toEqual({ status: 'ok' });
    const ready = await d.req('GET', '/health/ready');
    expect(ready.status).toBe(200);
    expect(ready.body).toEqual({ status: 'ok', sync: 'disabled', database: 'ok' });
  });

  it('GET /sync/status has the shape of docs/http.md', async () => {
    const r = await d.req('GET', '/sync/status');
    expect(r.status).toBe(200);
    // docs/http.md's fields (more may be added)
    expect(r.body).toMatchObject({
      deviceId: d.deviceId,
      deviceName: d.config.deviceName,
      libraryId: d.config.libraryId,
      phase: 'disabled',
      hlc: expect.any(String),
      sharedLogSize: expect.any(Number),
      peers: expect.any(Array),
    });
    const before = r.body.sharedLogSize;
    await d.req('POST', '/tags', { name: 'counted' });
    const after = await d.req('GET', '/sync/status');
    expect(after.body.sharedLogSize).toBe(before + 1);
    expect(after.body.hlc > r.body.hlc).toBe(true);
  });

  it('GET /sync/digest is stable, and changes with the data', async () => {
    const l = await ownLocation(d);
    await d.req('POST', '/entries/batch', { items: [...Array(25)].map((_, i) => entryInput(l, i)) });
    const tag = (await d.req('POST', '/tags', { name: 'Holiday' })).body;
    const g1 = await d.req('GET', '/sync/digest');
    const g2 = await d.req('GET', '/sync/digest');
    expect(g1.status).toBe(200);
    expect(Object.keys(g1.body.models).sort()).toEqual([...MODELS].sort());
    for (const m of MODELS)
      expect(g1.body.models[m]).toEqual({ count: expect.any(Number), hash: expect.stringMatching(/^[0-9a-f]+$/) });
    expect(g1.body.models.entries.count).toBe(await d.list('/entries').then((e) => e.length));
    expect(g2.body).toEqual(g1.body);
    await d.req('PATCH', `/tags/${tag.id}`, { name: 'Holidays' });
    const g3 = await d.req('GET', '/sync/digest');
    expect(g3.body.models.tags.hash).not.toBe(g1.body.models.tags.hash);
    expect(g3.body.models.entries).toEqual(g1.body.models.entries);
    // a write that changes nothing leaves the digest as it was
    await d.req('POST', '/tags', tag);
    await d.req('PATCH', `/tags/${tag.id}`, { name: 'Holidays' });
    expect((await d.req('GET', '/sync/digest')).body).toEqual(g3.body);
    await d.req('DELETE', `/tags/${tag.id}`);
    const g4 = await d.req('GET', '/sync/digest');
    expect(g4.body.models.tags.count).toBe(g3.body.models.tags.count - 1);
  });

  it('GET /health is 503 with the error shape once the database is gone', async () => {
    const lost = await startApiDevice(mode);
    try {
      await lost.db.destroy();
      const notReady = await lost.req('GET', '/health/ready');
      expect(notReady.status).toBe(503);
      expect(notReady.body).toMatchObject({
        statusCode: 503,
        message: expect.stringMatching(/^not ready: database: /),
      });
      expect((await lost.req('GET', '/health/live')).status).toBe(200);
      const r = await lost.req('GET', '/health');
      expect(r.status).toBe(503);
      expect(r.body).toMatchObject({
        statusCode: 503,
        error: 'Service Unavailable',
        message: expect.stringMatching(/^database: /),
        status: 'unavailable',
      });
    } finally {
      await lost.close().catch(() => undefined);
    }
  });
});

describe('with sync enabled', () => {
  it('serves /sync/status and /health', async () => {
    const d = await startTestDevice({
      libraryId: randomUUID(),
      databaseUrl: await createTestDatabase('api'),
      syncEnabled: true,
    });
    try {
      const s = await d.req('GET', '/sync/status');
      expect(s.status).toBe(200);
      expect(s.body).toMatchObject({
        deviceId: d.deviceId,
        libraryId: d.config.libraryId,
        hlc: expect.any(String),
        sharedLogSize: expect.any(Number),
        peers: expect.any(Array),
      });
      expect(['uninitialized', 'backfilling', 'catching_up', 'ready']).toContain(s.body.phase);
      const h = await d.req('GET', '/health');
      expect(h.status).toBe(200);
      expect(h.body).toMatchObject({
        status: 'ok',
        database: 'ok',
        sync: expect.stringMatching(/^(uninitialized|backfilling|catching_up|ready)$/),
        nats: expect.stringMatching(/^(connected|disconnected)$/),
      });
    } finally {
      await d.close();
    }
  });

  it('GET /health/ready is 503 until the phase is ready (NATS unreachable: never), /health/live 200 meanwhile', async () => {
    const port = await freePort();
    const d = await startTestDevice({
      libraryId: randomUUID(),
      databaseUrl: await createTestDatabase('api'),
      syncEnabled: true,
      natsUrl: `nats://127.0.0.1:${port}`,
    });
    try {
      expect((await d.req('GET', '/sync/status')).body.phase).toBe('uninitialized');
      const r = await d.req('GET', '/health/ready');
      expect(r.status).toBe(503);
      expect(r.body).toMatchObject({
        statusCode: 503,
        error: 'Service Unavailable',
        message: 'not ready: phase uninitialized',
        status: 'unavailable',
        sync: 'uninitialized',
        database: 'ok',
      });
      expect((await d.req('GET', '/health/live')).status).toBe(200);
      expect((await d.req('GET', '/health')).status).toBe(200);
    } finally {
      await d.close();
    }
    // a device whose NATS answers: ready, and /health/ready says so
    const ok = await startTestDevice({
      libraryId: randomUUID(),
      databaseUrl: await createTestDatabase('api'),
      syncEnabled: true,
    });
    try {
      await waitPhase(ok);
      const r = await ok.req('GET', '/health/ready');
      expect(r.status).toBe(200);
      expect(r.body).toEqual({ status: 'ok', sync: 'ready', database: 'ok' });
      // /metrics: the phase (one of them at 1), dead letters, and the process's own metrics
      const m = String((await ok.req<{ raw: string }>('GET', '/metrics')).body.raw);
      expect(m).toMatch(/^sync_phase\{[^}]*phase="ready"[^}]*\} 1$/m);
      expect(m).toMatch(/^sync_phase\{[^}]*phase="backfilling"[^}]*\} 0$/m);
      expect(m).toMatch(/^sync_dead_letters\{[^}]*\} 0$/m);
      expect(m).toMatch(/^process_cpu_user_seconds_total \d/m);
      expect(m).toMatch(/^nodejs_heap_size_used_bytes \d/m);
    } finally {
      await ok.close();
    }
  });
});
