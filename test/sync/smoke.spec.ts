import { randomBytes, randomUUID } from 'node:crypto';
import { ENTRIES, LOCATIONS, OwnedWriter, SharedWriter, TAGS } from '@lib/sync';
import { createTestDatabase, dropTestDatabases } from '../support/databases';
import { startTestDevice, TestDevice, waitFor } from '../support/device-harness';
import { NatsServerProcess } from '../support/nats-server';

describe('smoke', () => {
  const lib = randomUUID();
  const libraryKey = randomBytes(32);
  let a: TestDevice;
  let b: TestDevice;
  const nats = new NatsServerProcess();
  beforeAll(async () => {
    await nats.start();
    a = await startTestDevice({
      name: 'a',
      libraryId: lib,
      libraryKey,
      databaseUrl: await createTestDatabase(),
      natsUrl: nats.url,
    });
    b = await startTestDevice({
      name: 'b',
      libraryId: lib,
      libraryKey,
      databaseUrl: await createTestDatabase(),
      natsUrl: nats.url,
    });
  });
  afterAll(async () => {
    await a?.close();
    await b?.close();
    await dropTestDatabases();
    await nats.dispose();
  });
  it('owned + shared A -> B', async () => {
    const loc = randomUUID();
    const t0 = Date.now();
    await a.app.get(OwnedWriter).transact(async (w) => {
      await w.upsert(LOCATIONS, [{ id: loc, volume_id: null, name: 'L', path: '/l' }]);
      await w.upsert(
        ENTRIES,
        Array.from({ length: 20000 }, (_, i) => ({
          id: randomUUID(),
          location_id: loc,
          name: `f${i}`,
          path: `/l/f${i}`,
          kind: 'file',
          size_bytes: i,
          modified_at: new Date().toISOString(),
        })),
      );
    });
    const tag = randomUUID();
    await b.app.get(SharedWriter).transact((w) => w.set(TAGS, { id: tag }, { name: 'x', color: 'red' }));
    await waitFor(
      'entries on b',
      async () =>
        (
          await b.db
            .selectFrom('entries')
            .select((e) => e.fn.countAll<number>().as('n'))
            .executeTakeFirstOrThrow()
        ).n == 20000,
      60000,
    );
    console.log('20k entries in', Date.now() - t0, 'ms');
    await waitFor(
      'tag on a',
      async () => !!(await a.db.selectFrom('tags').selectAll().where('id', '=', tag).executeTakeFirst()),
    );
    await waitFor(
      'log pruned on b',
      async () => (await b.db.selectFrom('shared_changes').selectAll().execute()).length === 0,
      20000,
    );
  });
});
