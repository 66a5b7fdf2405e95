import { randomUUID } from 'node:crypto';
import { encodeHlc } from '@lib/sync';
import { createTestDatabase, tempDataDir } from '../support/databases';
import { startTestDevice, TestDevice } from '../support/device-harness';

/** Shared set-up of the HTTP API tests: one device per mode, and rows "received" from peers. */

export type Mode = 'postgres' | 'pglite';
export const MODES: [Mode][] = [['postgres'], ['pglite']];

/** A device with sync off, on a fresh Postgres database or on embedded PGlite. */
export async function startApiDevice(mode: Mode, syncEnabled = false): Promise<TestDevice> {
  const libraryId = randomUUID();
  if (mode === 'postgres')
    return startTestDevice({ libraryId, databaseUrl: await createTestDatabase('api'), syncEnabled });
  return startTestDevice({ libraryId, databaseUrl: null, dataDir: tempDataDir('api-pglite-'), syncEnabled });
}

const peerVersion = () => encodeHlc({ physical: Date.now(), logical: 0, node: randomUUID() });

/** Stores rows as a peer's sync would: owned by `owner`, written straight into the database. */
export const peer = {
  async volume(d: TestDevice, owner: string, id = randomUUID()): Promise<string> {
    await d.db
      .insertInto('volumes')
      .values({
        id,
        device_id: owner,
        name: 'peer disk',
        mount_point: '/mnt/peer',
        capacity_bytes: 100,
        free_bytes: null,
        version: peerVersion(),
        updated_at: new Date(),
      })
      .execute();
    return id;
  },
  async location(d: TestDevice, owner: string, id = randomUUID()): Promise<string> {
    await d.db
      .insertInto('locations')
      .values({
        id,
        device_id: owner,
        volume_id: null,
        name: 'peer photos',
        path: '/peer/photos',
        version: peerVersion(),
        updated_at: new Date(),
      })
      .execute();
    return id;
  },
  async entry(d: TestDevice, owner: string, locationId: string, id = randomUUID()): Promise<string> {
    await d.db
      .insertInto('entries')
      .values({
        id,
        device_id: owner,
        location_id: locationId,
        name: 'peer.jpg',
        path: '/peer/photos/peer.jpg',
        kind: 'file',
        size_bytes: 7,
        modified_at: new Date('2024-01-01T00:00:00Z'),
        version: peerVersion(),
        updated_at: new Date(),
      })
      .execute();
    return id;
  },
};

export function entryInput(
  locationId: string,
  i: number,
  extra: Record<string, unknown> = {},
): Record<string, unknown> {
  return {
    id: randomUUID(),
    locationId,
    name: `f${i}.jpg`,
    path: `/photos/f${i}.jpg`,
    kind: 'file',
    sizeBytes: i,
    modifiedAt: new Date(1.7e12 + i * 1000).toISOString(),
    ...extra,
  };
}

/** A location (on a new volume) of the device itself, for entries to live in. */
export async function ownLocation(d: TestDevice): Promise<string> {
  const r = await d.req('POST', '/locations', { name: 'Photos', path: `/photos/${randomUUID()}` });
  if (r.status !== 201) throw new Error(`POST /locations -> ${r.status} ${JSON.stringify(r.body)}`);
  return r.body.id;
}
