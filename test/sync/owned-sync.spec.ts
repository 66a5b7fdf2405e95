import { must, waitConverged } from '../support/api';
import { Cluster } from '../support/cluster';
import { LONG, waitFor } from '../support/device-harness';
import { createEntries, createVolumeAndLocation, entryInput } from '../support/fixtures';

/**
 * Device-owned data (volumes, locations, entries): state-based sync between peers, in both
 * directions and across three devices, compared through /sync/digest and reads of records.
 */
describe('device-owned data', () => {
  let cluster: Cluster;

  afterEach(async () => {
    await cluster?.dispose();
  });

  it('syncs volumes, locations and entries both ways between two peers: creates, a 5,000-entry batch, patches and deletes', async () => {
    cluster = await new Cluster().start();
    const [a, b] = await cluster.startDevices(['a', 'b']);

    // A → B: a volume, a location, a batch of 5,000 entries and one more entry
    const la = await createVolumeAndLocation(a, 'a');
    const batch = await createEntries(a, la.locationId, 5000);
    const single = await must(a, 'POST', '/entries', entryInput(la.locationId, 99_999));
    // B → A at the same time
    const lb = await createVolumeAndLocation(b, 'b');
    const fromB = await createEntries(b, lb.locationId, 50);

    await waitConverged([a, b], { volumes: 2, locations: 2, entries: 5051 });
    // the same JSON on both devices, whoever serves it
    for (const path of [
      `/volumes/${la.volumeId}`,
      `/locations/${la.locationId}`,
      `/entries/${batch[4321]}`,
      `/entries/${single.id}`,
      `/locations/${lb.locationId}`,
      `/entries/${fromB[7]}`,
    ]) {
      const [ra, rb] = await Promise.all([a.req('GET', path), b.req('GET', path)]);
      expect({ path, status: rb.status, body: rb.body }).toEqual({ path, status: 200, body: ra.body });
    }
    expect((await b.list(`/entries?deviceId=${a.deviceId}`)).length).toBe(5001);
    expect((await a.list(`/entries?deviceId=${b.deviceId}`)).length).toBe(50);
    expect((await b.req('GET', `/entries/${batch[0]}`)).body.deviceId).toBe(a.deviceId);

    // PATCH on both sides
    await must(a, 'PATCH', `/entries/${batch[10]}`, { name: 'renamed-on-a.jpg', sizeBytes: 4242 });
    await must(a, 'PATCH', `/locations/${la.locationId}`, { name: 'Photos of A' });
    await must(a, 'PATCH', `/volumes/${la.volumeId}`, { freeBytes: 123 });
    await must(b, 'PATCH', `/entries/${fromB[3]}`, { path: '/mnt/b/photos/moved.jpg' });
    // only the owner may write its rows
    expect((await b.req('PATCH', `/entries/${batch[11]}`, { name: 'not-mine.jpg' })).status).toBe(403);
    expect((await a.req('DELETE', `/locations/${lb.locationId}`)).status).toBe(403);

    await waitFor(
      'patches of A on B',
      async () => (await b.req('GET', `/entries/${batch[10]}`)).body.name === 'renamed-on-a.jpg',
      LONG,
    );
    await waitConverged([a, b], { volumes: 2, locations: 2, entries: 5051 });
    expect((await b.req('GET', `/entries/${batch[10]}`)).body).toMatchObject({
      name: 'renamed-on-a.jpg',
      sizeBytes: 4242,
    });
    expect((await b.req('GET', `/locations/${la.locationId}`)).body.name).toBe('Photos of A');
    expect((await b.req('GET', `/volumes/${la.volumeId}`)).body.freeBytes).toBe(123);
    expect((await a.req('GET', `/entries/${fromB[3]}`)).body.path).toBe('/mnt/b/photos/moved.jpg');
    expect((await a.req('GET', `/entries/${batch[11]}`)).body.name).toBe('f11.jpg');

    // DELETE an entry on each side
    expect((await a.req('DELETE', `/entries/${batch[20]}`)).status).toBe(204);
    expect((await b.req('DELETE', `/entries/${fromB[0]}`)).status).toBe(204);
    await waitConverged([a, b], { volumes: 2, locations: 2, entries: 5049 });
    expect((await b.req('GET', `/entries/${batch[20]}`)).status).toBe(404);
    expect((await a.req('GET', `/entries/${fromB[0]}`)).status).toBe(404);

    // DELETE a location on A: its 5,000 entries go with it on B too
    expect((await a.req('DELETE', `/locations/${la.locationId}`)).status).toBe(204);
    await waitConverged([a, b], { volumes: 2, locations: 1, entries: 49 });
    expect((await b.req('GET', `/locations/${la.locationId}`)).status).toBe(404);
    expect(await b.list(`/entries?locationId=${la.locationId}`)).toEqual([]);
    expect(await b.list(`/entries?deviceId=${a.deviceId}`)).toEqual([]);
    expect((await b.req('GET', `/entries/${single.id}`)).status).toBe(404);
    // B's own data is untouched
    expect((await b.list(`/entries?locationId=${lb.locationId}`)).length).toBe(49);
  });

  it('three devices writing at once converge to the same data', async () => {
    cluster = await new Cluster().start();
    const devices = await cluster.startDevices(['a', 'b', 'c']);

    const made = await Promise.all(
      devices.map(async (d, k) => {
        const loc = await createVolumeAndLocation(d, `d${k}`);
        const ids = await createEntries(d, loc.locationId, 400);
        // single creates, patches and deletes interleaved with the other devices' writes
        for (let i = 0; i < 10; i++) await must(d, 'POST', '/entries', entryInput(loc.locationId, 1000 + i));
        for (let i = 0; i < 10; i++) await must(d, 'PATCH', `/entries/${ids[i]}`, { name: `patched-${k}-${i}.jpg` });
        for (let i = 10; i < 15; i++) expect((await d.req('DELETE', `/entries/${ids[i]}`)).status).toBe(204);
        await must(d, 'PATCH', `/volumes/${loc.volumeId}`, { name: `volume of ${k}` });
        return { ...loc, ids };
      }),
    );

    const digest = await waitConverged(devices, { volumes: 3, locations: 3, entries: 3 * 405 });
    expect(digest.entries.count).toBe(1215);
    for (const [k, m] of made.entries()) {
      for (const d of devices) {
        expect((await d.req('GET', `/entries/${m.ids[3]}`)).body).toMatchObject({
          name: `patched-${k}-3.jpg`,
          deviceId: devices[k].deviceId,
        });
        expect((await d.req('GET', `/entries/${m.ids[12]}`)).status).toBe(404);
        expect((await d.req('GET', `/volumes/${m.volumeId}`)).body.name).toBe(`volume of ${k}`);
      }
    }
    // every device lists every owner's entries the same way
    const lists = await Promise.all(devices.map((d) => d.list(`/entries?deviceId=${devices[1].deviceId}`)));
    expect(lists[0].length).toBe(405);
    expect(lists[1]).toEqual(lists[0]);
    expect(lists[2]).toEqual(lists[0]);
  });

  it('a batch travels as COPY text between a PGlite device and a Postgres device, both ways', async () => {
    cluster = await new Cluster().start();
    const [a, b] = await Promise.all([cluster.device('a', { databaseUrl: null }), cluster.device('b')]);
    const la = await createVolumeAndLocation(a, 'a');
    const lb = await createVolumeAndLocation(b, 'b');
    const fromA = await createEntries(a, la.locationId, 1500);
    const fromB = await createEntries(b, lb.locationId, 1500);
    await waitConverged([a, b], { volumes: 2, locations: 2, entries: 3000 });
    for (const path of [`/entries/${fromA[0]}`, `/entries/${fromA[1499]}`, `/entries/${fromB[777]}`]) {
      const [ra, rb] = await Promise.all([a.req('GET', path), b.req('GET', path)]);
      expect({ path, status: rb.status, body: rb.body }).toEqual({ path, status: 200, body: ra.body });
    }
    for (const d of [a, b]) {
      const metrics = String((await d.req<{ raw: string }>('GET', '/metrics')).body.raw);
      expect(Number(/sync_changes_sent_as_copy_total\{model="entries"[^}]*\} (\d+)/.exec(metrics)?.[1])).toBe(1500);
    }
  });

  it('a backlog written while sync was off goes out in order: values, the run of entries as COPY text, values', async () => {
    cluster = await new Cluster().start();
    const [a0, b] = await Promise.all([cluster.device('a', { syncEnabled: false }), cluster.device('b')]);
    const first = await must(a0, 'POST', '/locations', { name: 'first', path: '/first' });
    const ids = await createEntries(a0, first.id, 1500);
    await must(a0, 'DELETE', `/entries/${ids[10]}`);
    await must(a0, 'PATCH', `/entries/${ids[20]}`, { name: 'patched.jpg' });
    const last = await must(a0, 'POST', '/locations', { name: 'last', path: '/last' });
    const a = await cluster.restart(a0, { syncEnabled: true });
    await waitConverged([a, b], { locations: 2, entries: 1499 });
    expect((await b.req('GET', `/entries/${ids[10]}`)).status).toBe(404);
    expect((await b.req('GET', `/entries/${ids[20]}`)).body.name).toBe('patched.jpg');
    expect((await b.req('GET', `/locations/${last.id}`)).body.name).toBe('last');
    const metrics = String((await a.req<{ raw: string }>('GET', '/metrics')).body.raw);
    // the location before the run, and the patched entry, the tombstone and the location after it, as values
    expect(Number(/sync_changes_sent_as_copy_total\{model="entries"[^}]*\} (\d+)/.exec(metrics)?.[1])).toBe(1498);
  });

  it('changes are cut into messages the server accepts, even with a small max_payload', async () => {
    // 32 KB instead of the default 1 MB: a batch of entries must travel in many messages
    cluster = await new Cluster({ natsSettings: 'max_payload: 32768' }).start();
    const [a, b0] = await cluster.startDevices(['a', 'b']);
    const { locationId } = await createVolumeAndLocation(a, 'a');
    const long = (i: number) => `/mnt/a/${'deep/'.repeat(300)}file-${i}.jpg`; // ~1.5 KB per path
    // a backlog of one model's rows: it travels as COPY text, cut to the limit too
    const items = Array.from({ length: 1200 }, (_, i) => ({ ...entryInput(locationId, i), path: long(i) }));
    items[7].name = 'tab\there, newline\nthere, backslash \\ and "quotes", ünïcødé ✓';
    await must(a, 'POST', '/entries/batch', { items });
    const notes = 'n'.repeat(20_000);
    for (const e of items.slice(0, 5)) await must(a, 'PUT', `/entries/${e.id}/metadata`, { notes });
    await waitConverged([a, b0], { entries: 1200, user_metadata: 5 });
    expect((await b0.req('GET', `/entries/${items[1199].id}`)).body.path).toBe(long(1199));
    expect((await b0.req('GET', `/entries/${items[7].id}`)).body).toEqual(
      (await a.req('GET', `/entries/${items[7].id}`)).body,
    );
    expect((await b0.req('GET', `/entries/${items[0].id}/metadata`)).body.notes).toBe(notes);
    const metrics = String((await a.req<{ raw: string }>('GET', '/metrics')).body.raw);
    expect(Number(/sync_changes_sent_as_copy_total\{model="entries"[^}]*\} (\d+)/.exec(metrics)?.[1])).toBe(1200);

    // and a device catching up after being away gets it in pieces too
    await b0.close();
    const more = Array.from({ length: 300 }, (_, i) => ({ ...entryInput(locationId, 1000 + i), path: long(1000 + i) }));
    await must(a, 'POST', '/entries/batch', { items: more });
    for (const e of more.slice(0, 5)) await must(a, 'PUT', `/entries/${e.id}/metadata`, { notes });
    const b = await cluster.restart(b0);
    await waitConverged([a, b], { entries: 1500, user_metadata: 10 });
  });
});
