import { randomUUID } from 'node:crypto';
import { must, statusOf, waitConverged } from '../support/api';
import { Cluster } from '../support/cluster';
import { fieldClocks, sharedRows } from '../support/db-queries';
import type { TestDevice } from '../support/device-harness';
import { LONG, waitFor } from '../support/device-harness';
import { createEntries, createVolumeAndLocation } from '../support/fixtures';

/**
 * Shared data (tags, albums, metadata, memberships): written on any device, merged field by field
 * with hybrid logical clocks. Concurrent edits are made truly concurrent by cutting every device
 * off from NATS (the server is killed), writing on several of them, and bringing NATS back.
 */
describe('shared data', () => {
  let cluster: Cluster;

  afterEach(async () => {
    await cluster?.dispose();
  });

  it('tags, albums, metadata and memberships written on one device are readable on the others', async () => {
    cluster = await new Cluster().start();
    const [a, b, c] = await cluster.startDevices(['a', 'b', 'c']);

    const { locationId } = await createVolumeAndLocation(a, 'a');
    const [e1, e2] = await createEntries(a, locationId, 2);
    const tag = await must(a, 'POST', '/tags', { name: 'holidays', color: '#ff0000' });
    const album = await must(a, 'POST', '/albums', { name: 'Summer', description: 'beach and hills' });
    await must(a, 'PUT', `/entries/${e1}/metadata`, { favorite: true, notes: 'the best one' });
    await must(a, 'PUT', `/tags/${tag.id}/entries/${e1}`);
    await must(a, 'PUT', `/albums/${album.id}/entries/${e1}`);
    await must(a, 'PUT', `/albums/${album.id}/entries/${e2}`);

    await waitConverged([a, b, c], {
      tags: 1,
      albums: 1,
      user_metadata: 1,
      tag_entries: 1,
      album_entries: 2,
      entries: 2,
    });
    for (const d of [b, c]) {
      expect((await d.req('GET', `/tags/${tag.id}`)).body).toEqual({ id: tag.id, name: 'holidays', color: '#ff0000' });
      expect((await d.req('GET', `/albums/${album.id}`)).body).toEqual(album);
      expect((await d.req('GET', `/entries/${e1}/metadata`)).body).toEqual({
        entryId: e1,
        favorite: true,
        hidden: false,
        notes: 'the best one',
      });
      expect((await d.list(`/tags/${tag.id}/entries`)).map((e) => e.id)).toEqual([e1]);
      expect((await d.list(`/albums/${album.id}/entries`)).map((e) => e.id).sort()).toEqual([e1, e2].sort());
      expect(await d.list('/tags')).toEqual(await a.list('/tags'));
      expect(await d.list('/metadata')).toEqual(await a.list('/metadata'));
    }

    // and the other way: edits on B and C reach A and each other
    await must(b, 'PATCH', `/tags/${tag.id}`, { color: '#00ff00' });
    await must(c, 'DELETE', `/albums/${album.id}/entries/${e2}`);
    await must(c, 'PUT', `/entries/${e2}/metadata`, { hidden: true });
    const tagOfC = await must(c, 'POST', '/tags', { name: 'from c' });
    await waitConverged([a, b, c], { tags: 2, album_entries: 1, user_metadata: 2 });
    for (const d of [a, b, c]) {
      expect((await d.req('GET', `/tags/${tag.id}`)).body.color).toBe('#00ff00');
      expect((await d.req('GET', `/tags/${tagOfC.id}`)).body.name).toBe('from c');
      expect((await d.list(`/albums/${album.id}/entries`)).map((e) => e.id)).toEqual([e1]);
      expect((await d.req('GET', `/entries/${e2}/metadata`)).body.hidden).toBe(true);
    }

    // deletes reach everyone
    expect((await b.req('DELETE', `/tags/${tag.id}`)).status).toBe(204);
    await waitConverged([a, b, c], { tags: 1 });
    for (const d of [a, b, c]) {
      expect((await d.req('GET', `/tags/${tag.id}`)).status).toBe(404);
      expect((await d.req('PATCH', `/tags/${tag.id}`, { name: 'back?' })).status).toBe(404);
    }
  });

  it('concurrent edits made while cut off from NATS converge identically everywhere, and the offline writes reach everyone', async () => {
    cluster = await new Cluster().start();
    const [a, b, c] = await cluster.startDevices(['a', 'b', 'c']);

    // common starting point, synced everywhere
    const { locationId } = await createVolumeAndLocation(a, 'a');
    const [e1, e2, e3] = await createEntries(a, locationId, 3);
    const same = await must(a, 'POST', '/tags', { name: 'same-field', color: 'white' });
    const different = await must(a, 'POST', '/tags', { name: 'different-fields', color: 'white' });
    const doomed = await must(a, 'POST', '/tags', { name: 'doomed', color: 'white' });
    const album = await must(a, 'POST', '/albums', { name: 'album', description: 'initial' });
    await must(a, 'PUT', `/entries/${e1}/metadata`, { favorite: false, hidden: false, notes: 'initial' });
    await must(a, 'PUT', `/albums/${album.id}/entries/${e2}`); // present; removed and re-added below
    await waitConverged([a, b, c], { tags: 3, albums: 1, user_metadata: 1, album_entries: 1, tag_entries: 0 });

    // nobody can see anybody
    await cluster.nats.stop();
    await waitFor(
      'devices to notice NATS is gone',
      async () => (await Promise.all([a, b, c].map(statusOf))).every((s) => s.natsConnected !== true),
      LONG,
    );

    // the same field on A and on B, in both wall-clock orders
    await must(a, 'PATCH', `/tags/${same.id}`, { name: 'name from A' });
    await must(b, 'PATCH', `/tags/${same.id}`, { name: 'name from B' });
    await must(b, 'PATCH', `/tags/${same.id}`, { color: 'blue from B' });
    await must(a, 'PATCH', `/tags/${same.id}`, { color: 'green from A' });
    await must(b, 'PATCH', `/albums/${album.id}`, { description: 'description from B' });
    await must(a, 'PATCH', `/albums/${album.id}`, { description: 'description from A' });
    // different fields of one record on A and on B
    await must(a, 'PATCH', `/tags/${different.id}`, { name: 'renamed by A' });
    await must(b, 'PATCH', `/tags/${different.id}`, { color: 'recoloured by B' });
    await must(a, 'PUT', `/entries/${e1}/metadata`, { favorite: true });
    await must(b, 'PUT', `/entries/${e1}/metadata`, { notes: 'notes from B' });
    await must(c, 'PUT', `/entries/${e1}/metadata`, { hidden: true });
    // delete on A against a later edit on B: the delete wins
    expect((await a.req('DELETE', `/tags/${doomed.id}`)).status).toBe(204);
    await must(b, 'PATCH', `/tags/${doomed.id}`, { name: 'edited after the delete', color: 'black' });
    // memberships: add on A vs add-then-remove on B; remove on A vs remove-then-add on B
    await must(a, 'PUT', `/tags/${same.id}/entries/${e3}`);
    await must(b, 'PUT', `/tags/${same.id}/entries/${e3}`);
    await must(b, 'DELETE', `/tags/${same.id}/entries/${e3}`);
    await must(a, 'DELETE', `/albums/${album.id}/entries/${e2}`);
    await must(b, 'DELETE', `/albums/${album.id}/entries/${e2}`);
    await must(b, 'PUT', `/albums/${album.id}/entries/${e2}`);
    // and device-owned writes made while cut off
    const offlineOfA = await createEntries(a, locationId, 25, 'f', 100);
    const lb = await createVolumeAndLocation(b, 'b');
    const offlineOfB = await createEntries(b, lb.locationId, 25);

    // what each device wrote, with its stamps, before they can exchange anything
    const clocks = async (d: TestDevice) => ({
      same: await fieldClocks(d.db, 'tags', { id: same.id }),
      album: await fieldClocks(d.db, 'albums', { id: album.id }),
      meta: await fieldClocks(d.db, 'user_metadata', { entry_id: e1 }),
      tagged: await fieldClocks(d.db, 'tag_entries', { tag_id: same.id, entry_id: e3 }),
      inAlbum: await fieldClocks(d.db, 'album_entries', { album_id: album.id, entry_id: e2 }),
    });
    const ca = await clocks(a);
    const cb = await clocks(b);
    // concurrent: each side stamped its own edit
    expect(ca.same.name).not.toBe(cb.same.name);
    expect(ca.tagged.present).not.toBe(cb.tagged.present);
    const pick = <T>(clockA: string, clockB: string, fromA: T, fromB: T): T => (clockA > clockB ? fromA : fromB);
    const expected = {
      same: {
        id: same.id,
        name: pick(ca.same.name, cb.same.name, 'name from A', 'name from B'),
        color: pick(ca.same.color, cb.same.color, 'green from A', 'blue from B'),
      },
      description: pick(ca.album.description, cb.album.description, 'description from A', 'description from B'),
      tagged: pick(ca.tagged.present, cb.tagged.present, [e3], []),
      inAlbum: pick(ca.inAlbum.present, cb.inAlbum.present, [], [e2]),
    };

    await cluster.nats.start();
    await waitConverged([a, b, c], { tags: 2, albums: 1, user_metadata: 1, entries: 3 + 25 + 25, locations: 2 });

    for (const d of [a, b, c]) {
      expect((await d.req('GET', `/tags/${same.id}`)).body).toEqual(expected.same);
      expect((await d.req('GET', `/albums/${album.id}`)).body.description).toBe(expected.description);
      expect((await d.req('GET', `/tags/${different.id}`)).body).toEqual({
        id: different.id,
        name: 'renamed by A',
        color: 'recoloured by B',
      });
      expect((await d.req('GET', `/entries/${e1}/metadata`)).body).toEqual({
        entryId: e1,
        favorite: true,
        hidden: true,
        notes: 'notes from B',
      });
      expect((await d.req('GET', `/tags/${doomed.id}`)).status).toBe(404);
      expect((await d.list(`/tags/${same.id}/entries`)).map((e) => e.id)).toEqual(expected.tagged);
      expect((await d.list(`/albums/${album.id}/entries`)).map((e) => e.id)).toEqual(expected.inAlbum);
      expect((await d.req('GET', `/entries/${offlineOfA[24]}`)).status).toBe(200);
      expect((await d.req('GET', `/entries/${offlineOfB[24]}`)).status).toBe(200);
    }
    // identical shared state on every device, down to the field clocks and tombstones
    for (const table of ['tags', 'albums', 'user_metadata', 'tag_entries', 'album_entries'] as const) {
      const rows = await Promise.all([a, b, c].map((d) => sharedRows(d.db, table)));
      expect({ table, rows: rows[1] }).toEqual({ table, rows: rows[0] });
      expect({ table, rows: rows[2] }).toEqual({ table, rows: rows[0] });
    }
    const tagsOfC = await sharedRows(c.db, 'tags');
    const doomedRow = tagsOfC.find((r) => r.id === doomed.id)!;
    expect(doomedRow.deleted_hlc).toEqual(expect.any(String));
    // the winning same-field value is the one with the greater clock
    const finalSame = tagsOfC.find((r) => r.id === same.id)!;
    expect((finalSame.clocks as Record<string, string>).name).toBe([ca.same.name, cb.same.name].sort()[1]);

    // and the devices keep syncing afterwards
    const after = await must(c, 'POST', '/tags', { id: randomUUID(), name: 'after reconnect' });
    await waitFor(
      'a tag written on C after reconnecting to reach A and B',
      async () =>
        (await a.req('GET', `/tags/${after.id}`)).status === 200 &&
        (await b.req('GET', `/tags/${after.id}`)).status === 200,
      LONG,
    );
  });
});
