import { randomUUID } from 'node:crypto';
import { ENTRIES, LOCATIONS, OwnedWriter } from '@lib/sync';
import type { CreateEntryInput } from '../../src/library/entries/entry.input';
import { Api, must } from './api';
import type { TestDevice } from './device-harness';

/** Test data written through the public API (docs/http.md), and in bulk through the owner's write path. */

/** An entry as POST /entries takes it, with its id chosen by the test. */
export type EntryInput = CreateEntryInput & { id: string };

/** The i-th entry of a location, named `${label}${i}.jpg`, with a new id. */
export function entryInput(locationId: string, i: number, label = 'f'): EntryInput {
  return {
    id: randomUUID(),
    locationId,
    name: `${label}${i}.jpg`,
    path: `/data/${label}${i}.jpg`,
    kind: 'file',
    sizeBytes: 1000 + i,
    modifiedAt: new Date(1_700_000_000_000 + i * 1000).toISOString(),
  };
}

/** n new entries of the location (batches of up to 5,000, numbered from `from`); returns their ids. */
export async function createEntries(p: Api, locationId: string, n: number, label = 'f', from = 0): Promise<string[]> {
  const ids: string[] = [];
  for (let start = 0; start < n; start += 5000) {
    const items = Array.from({ length: Math.min(5000, n - start) }, (_, k) =>
      entryInput(locationId, from + start + k, label),
    );
    ids.push(...items.map((e) => e.id));
    await must(p, 'POST', '/entries/batch', { items });
  }
  return ids;
}

/** A location of the device (on no volume); returns its id. */
export async function createLocation(p: Api, name = `loc-${randomUUID().slice(0, 8)}`): Promise<string> {
  const id = randomUUID();
  await must(p, 'POST', '/locations', { id, name, path: `/${name}` });
  return id;
}

/** A volume and a location on it, returned with their ids. */
export async function createVolumeAndLocation(
  p: Api,
  label: string,
): Promise<{ volumeId: string; locationId: string }> {
  const volume = await must(p, 'POST', '/volumes', {
    name: `vol-${label}`,
    mountPoint: `/mnt/${label}`,
    capacityBytes: 1_000_000_000,
    freeBytes: 500_000_000,
  });
  const location = await must(p, 'POST', '/locations', {
    name: `loc-${label}`,
    path: `/mnt/${label}/photos`,
    volumeId: volume.id,
  });
  return { volumeId: volume.id, locationId: location.id };
}

export async function createTag(p: Api, name: string, color: string | null = null): Promise<string> {
  const id = randomUUID();
  await must(p, 'POST', '/tags', { id, name, color });
  return id;
}

/** n entries written through the owner's write path in one transaction (bulk setup). */
export async function seedEntries(
  d: TestDevice,
  n: number,
  prefix = 'f',
): Promise<{ locationId: string; ids: string[] }> {
  const locationId = randomUUID();
  const ids = Array.from({ length: n }, () => randomUUID());
  await d.app.get(OwnedWriter).transact(async (w) => {
    await w.upsert(LOCATIONS, [{ id: locationId, volume_id: null, name: `${prefix}-loc`, path: `/${prefix}` }]);
    await w.upsert(
      ENTRIES,
      ids.map((id, i) => ({
        id,
        location_id: locationId,
        name: `${prefix}${i}.txt`,
        path: `/${prefix}/${prefix}${i}.txt`,
        kind: 'file',
        size_bytes: i,
        modified_at: '2024-01-02T03:04:05.000Z',
      })),
    );
  });
  return { locationId, ids };
}
