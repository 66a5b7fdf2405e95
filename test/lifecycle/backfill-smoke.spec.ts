import { randomUUID } from 'node:crypto';
import { ENTRIES, LOCATIONS, OwnedWriter, SharedWriter, TAGS, SyncEngine } from '@lib/sync';
import { createTestDatabase, dropTestDatabases } from '../support/databases';
import { startTestDevice, TestDevice, waitFor } from '../support/device-harness';
import { NatsServerProcess } from '../support/nats-server';

describe('backfill smoke', () => {
  const lib = randomUUID();
  const nats = new NatsServerProcess();
  const devices: TestDevice[] = [];
  beforeAll(async () => { await nats.start(); });
  afterAll(async () => { for (const d of devices) await d.close(); await dropTestDatabases(); await nats.dispose(); });
  it('new device pulls everything', async () => {
    const a = await startTestDevice({ name: 'a', libraryId: lib, databaseUrl: await createTestDatabase(), natsUrl: nats.url });
    devices.push(a);
    const loc = randomUUID();
    await a.app.get(OwnedWriter).transact(async (w) => {
      await w.upsert(LOCATIONS, [{ id: loc, volume_id: null, name: 'L', path: '/l' }]);
      await w.upsert(ENTRIES, Array.from({ length: 20000 }, (_, i) => ({ id: randomUUID(), location_id: loc, name: `f${i}`, path: `/l/f${i}`, kind: 'file', size_bytes: i, modified_at: new Date().toISOString() })));
    });
    for (let i = 0; i < 50; i++) await a.app.get(SharedWriter).transact((w) => w.set(TAGS, { id: randomUUID() }, { name: `t${i}`, color: 'red' }));
    const t0 = Date.now();
    const c = await startTestDevice({ name: 'c', libraryId: lib, databaseUrl: await createTestDatabase(), natsUrl: nats.url, logLevels: ['log','warn','error'] });
    devices.push(c);
    await waitFor('c ready', async () => (await c.req('GET', '/sync/status')).body.phase === 'ready', 60000);
    console.log('backfill 20k in', Date.now() - t0);
    const n = await c.db.selectFrom('entries').select((e) => e.fn.countAll<number>().as('n')).executeTakeFirstOrThrow();
    expect(Number(n.n)).toBe(20000);
    const tags = await c.db.selectFrom('tags').selectAll().execute();
    expect(tags.length).toBe(50);
    const st = (await c.req('GET', '/sync/status')).body;
    console.log(JSON.stringify(st));
    expect(c.app.get(SyncEngine).phase).toBe('ready');
  });
});
