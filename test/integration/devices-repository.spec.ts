import { randomUUID } from 'node:crypto';
import type { Db } from '@lib/db';
import { ALL_ACKNOWLEDGED, DevicesRepository, encodeHlc, IdentityError } from '@lib/sync';
import { DB_MODES, useTestDb } from './storage-db';

/**
 * The devices table (DevicesRepository): this device's identity, and its peers' acknowledgements,
 * on Postgres and on PGlite.
 */

describe.each(DB_MODES)('storage on %s', (mode) => {
  let db: Db;
  useTestDb(mode, (d) => (db = d));

  describe('devices repository', () => {
    const devices = new DevicesRepository();
    const LIBRARY = '11111111-1111-4111-8111-111111111111';

    beforeEach(async () => {
      await db.deleteFrom('devices').execute();
      await db.deleteFrom('sync_local_state').where('key', 'in', ['device_id', 'library_id']).execute();
    });

    it('resolveSelf generates an id once and returns the same id later', async () => {
      const id = await devices.resolveSelf(db, { configuredId: null, name: 'laptop', libraryId: LIBRARY });
      expect(id).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/);
      expect(await devices.resolveSelf(db, { configuredId: null, name: 'laptop', libraryId: LIBRARY })).toBe(id);
      expect(await devices.resolveSelf(db, { configuredId: id, name: 'renamed', libraryId: LIBRARY })).toBe(id);
      const rows = await devices.list(db);
      expect(rows).toHaveLength(1);
      expect(rows[0]).toMatchObject({ id, name: 'renamed', library_id: LIBRARY, is_self: true, removed_at: null });
      expect(await devices.peers(db)).toEqual([]);
    });

    it('resolveSelf uses a configured id on first start and keeps it', async () => {
      const configured = randomUUID();
      expect(await devices.resolveSelf(db, { configuredId: configured, name: 'nas', libraryId: LIBRARY })).toBe(
        configured,
      );
      expect(await devices.resolveSelf(db, { configuredId: null, name: 'nas', libraryId: LIBRARY })).toBe(configured);
    });

    it('resolveSelf rejects a different configured DEVICE_ID or a different LIBRARY_ID, and changes nothing', async () => {
      const id = await devices.resolveSelf(db, { configuredId: null, name: 'laptop', libraryId: LIBRARY });
      const wrongDevice = await devices
        .resolveSelf(db, { configuredId: randomUUID(), name: 'laptop', libraryId: LIBRARY })
        .catch((e: unknown) => e);
      expect(wrongDevice).toBeInstanceOf(IdentityError);
      expect(wrongDevice).toMatchObject({ variable: 'DEVICE_ID', message: expect.stringMatching(/^DEVICE_ID: .*\b/) });
      const otherLibrary = randomUUID();
      const wrongLibrary = await devices
        .resolveSelf(db, { configuredId: null, name: 'laptop', libraryId: otherLibrary })
        .catch((e: unknown) => e);
      expect(wrongLibrary).toBeInstanceOf(IdentityError);
      expect(wrongLibrary).toMatchObject({ variable: 'LIBRARY_ID', message: expect.stringContaining(otherLibrary) });
      expect(await devices.resolveSelf(db, { configuredId: null, name: 'laptop', libraryId: LIBRARY })).toBe(id);
      expect((await devices.list(db)).map((d) => d.id)).toEqual([id]);
    });

    it('resolveSelf: two processes starting at once on one new database agree on one identity', async () => {
      const ids = await Promise.all(
        Array.from({ length: 4 }, () =>
          devices.resolveSelf(db, { configuredId: null, name: 'twin', libraryId: LIBRARY }),
        ),
      );
      expect(new Set(ids).size).toBe(1);
      const self = (await devices.list(db)).filter((d) => d.is_self);
      expect(self.map((d) => d.id)).toEqual([ids[0]]);
      expect(await devices.resolveSelf(db, { configuredId: null, name: 'twin', libraryId: LIBRARY })).toBe(ids[0]);
    });

    it('minimumSharedAck: null while an active peer never acked, removed peers ignored, else the minimum', async () => {
      await devices.resolveSelf(db, { configuredId: null, name: 'me', libraryId: LIBRARY });
      expect(await devices.minimumSharedAck(db)).toBe(ALL_ACKNOWLEDGED); // alone: nothing holds pruning back

      const [a, b, c] = [randomUUID(), randomUUID(), randomUUID()];
      const node = '00000000-0000-4000-8000-00000000000a';
      const h = (n: number) => encodeHlc({ physical: 1_700_000_000_000 + n, logical: 0, node });
      await devices.upsertPeer(db, { id: a, name: 'a', libraryId: LIBRARY });
      expect(await devices.minimumSharedAck(db)).toBeNull();
      await devices.recordAcks(db, a, { shared: h(5) });
      expect(await devices.minimumSharedAck(db)).toBe(h(5));

      await devices.upsertPeer(db, { id: b, name: 'b', libraryId: LIBRARY });
      expect(await devices.minimumSharedAck(db)).toBeNull(); // b never acknowledged
      await db.updateTable('devices').set({ removed_at: new Date() }).where('id', '=', b).execute();
      expect(await devices.minimumSharedAck(db)).toBe(h(5)); // b left the library

      await devices.upsertPeer(db, { id: c, name: 'c', libraryId: LIBRARY });
      await devices.recordAcks(db, c, { shared: h(3) });
      expect(await devices.minimumSharedAck(db)).toBe(h(3));
      await devices.recordAcks(db, a, { shared: h(2) }); // an older ack never lowers what a peer acknowledged
      expect((await devices.get(db, a))!.acked_shared).toBe(h(5));
      await devices.recordAcks(db, c, { shared: h(9) });
      expect(await devices.minimumSharedAck(db)).toBe(h(5));
    });
  });
});
