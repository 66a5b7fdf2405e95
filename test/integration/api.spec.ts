import { randomUUID } from 'node:crypto';
import { dropTestDatabases } from '../support/databases';
import type { TestDevice } from '../support/device-harness';
import { entryInput, MODES, ownLocation, peer, startApiDevice } from './api-fixtures';

/**
 * The local HTTP API of docs/http.md for device-owned data (volumes, locations, entries) and the rules
 * every route shares: validation naming the field, ownership, idempotent creates, paging.
 */

afterAll(() => dropTestDatabases());

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

describe.each(MODES)('HTTP API: input rules and owned data (%s)', (mode) => {
  let d: TestDevice;
  /** Another device of the library, whose rows reach this one through sync. */
  const other = randomUUID();

  beforeAll(async () => {
    d = await startApiDevice(mode);
  });
  afterAll(async () => {
    await d?.close();
  });

  const expect400 = (r: { status: number; body: any }, message: RegExp) => {
    expect(r.status).toBe(400);
    expect(r.body).toEqual({ statusCode: 400, error: 'Bad Request', message: expect.stringMatching(message) });
  };

  describe('bad input is a 400 naming the field', () => {
    it('a missing field', async () => {
      expect400(await d.req('POST', '/locations', { path: '/x' }), /^name: required/);
      expect400(await d.req('POST', '/volumes', { name: 'v', mountPoint: '/m' }), /^capacityBytes: required/);
      expect400(await d.req('POST', '/entries', {}), /locationId: required/);
    });

    it('a wrong type', async () => {
      expect400(
        await d.req('POST', '/volumes', { name: 'v', mountPoint: '/m', capacityBytes: 'lots' }),
        /^capacityBytes: Expected number, received string$/,
      );
      expect400(await d.req('POST', '/tags', { name: 5 }), /^name: Expected string, received number/);
      expect400(
        await d.req('PUT', `/entries/${randomUUID()}/metadata`, { favorite: 'yes' }),
        /^favorite: Expected boolean/,
      );
    });

    it('a body that is not an object', async () => {
      expect400(await d.req('POST', '/volumes', [1, 2]), /^body: Expected object, received array/);
      expect400(await d.req('POST', '/tags', 'null'), /^body: Expected object, received null/);
    });

    it('a malformed uuid, in the body, the path or the query', async () => {
      expect400(await d.req('POST', '/tags', { id: 'nope', name: 't' }), /^id: expected a uuid/);
      expect400(
        await d.req('POST', '/locations', { name: 'l', path: '/p', volumeId: 'x' }),
        /^volumeId: expected a uuid/,
      );
      expect400(await d.req('GET', '/volumes/nope'), /^id: expected a uuid/);
      expect400(await d.req('PATCH', '/entries/123', { name: 'x' }), /^id: expected a uuid/);
      expect400(await d.req('DELETE', '/locations/zzz'), /^id: expected a uuid/);
      expect400(await d.req('PUT', `/tags/bad/entries/${randomUUID()}`), /^tagId: expected a uuid/);
      expect400(await d.req('DELETE', `/albums/${randomUUID()}/entries/bad`), /^entryId: expected a uuid/);
      expect400(await d.req('GET', '/entries?locationId=bad'), /^locationId: expected a uuid/);
      expect400(await d.req('GET', '/volumes?deviceId=bad'), /^deviceId: expected a uuid/);
    });

    it('malformed JSON', async () => {
      const res = await fetch(`${d.url}/tags`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: '{"name": ',
      });
      expect(res.status).toBe(400);
      expect(await res.json()).toEqual({
        statusCode: 400,
        error: 'Bad Request',
        message: expect.stringMatching(/^body: malformed JSON/),
      });
    });

    it('an unknown field', async () => {
      expect400(
        await d.req('POST', '/volumes', { name: 'v', mountPoint: '/m', capacityBytes: 1, colour: 'red' }),
        /^colour: unknown field/,
      );
      expect400(await d.req('POST', '/entries/batch', { items: [], extra: 1 }), /^extra: unknown field/);
      expect400(await d.req('PUT', `/entries/${randomUUID()}/metadata`, { starred: true }), /^starred: unknown field/);
    });

    it('strings and numbers out of range', async () => {
      expect400(
        await d.req('POST', '/volumes', { name: '   ', mountPoint: '/m', capacityBytes: 1 }),
        /^name: must not be empty/,
      );
      expect400(
        await d.req('POST', '/volumes', { name: 'v', mountPoint: '', capacityBytes: 1 }),
        /^mountPoint: must not be empty/,
      );
      expect400(
        await d.req('POST', '/volumes', { name: 'v', mountPoint: '/m', capacityBytes: -1 }),
        /^capacityBytes: must not be negative/,
      );
      expect400(
        await d.req('POST', '/volumes', { name: 'v', mountPoint: '/m', capacityBytes: 1.5 }),
        /^capacityBytes: expected an integer/,
      );
      expect400(
        await d.req('POST', '/volumes', { name: 'v', mountPoint: '/m', capacityBytes: 10, freeBytes: 11 }),
        /^freeBytes: must not exceed capacityBytes/,
      );
      expect400(await d.req('POST', '/tags', { name: 'x'.repeat(1001) }), /^name: String must contain at most 1000/);
      // text the database cannot store is bad input, not a server error
      expect400(await d.req('POST', '/tags', '{"name":"a\\u0000b"}'), /^name: must not contain NUL/);
      expect400(
        await d.req('POST', '/volumes', '{"name":"v","mountPoint":"/m\\ud800","capacityBytes":1}'),
        /^mountPoint: must not contain NUL characters or unpaired surrogates/,
      );
      expect400(
        await d.req('PUT', `/entries/${randomUUID()}/metadata`, '{"notes":"\\udc00"}'),
        /^notes: must not contain/,
      );
      expect((await d.req('POST', '/tags', { name: 'emoji \u{1F600}' })).status).toBe(201);
      const loc = randomUUID();
      expect400(await d.req('POST', '/entries', entryInput(loc, 1, { kind: 'link' })), /^kind: Invalid enum value/);
      expect400(
        await d.req('POST', '/entries', entryInput(loc, 1, { modifiedAt: 'yesterday' })),
        /^modifiedAt: expected an ISO-8601 date-time/,
      );
      expect400(
        await d.req('POST', '/entries', entryInput(loc, 1, { modifiedAt: '2024-02-30T00:00:00Z' })),
        /^modifiedAt: expected an ISO-8601/,
      );
    });

    it('an empty PATCH, or one with unknown or invalid fields', async () => {
      const v = await d.req('POST', '/volumes', { name: 'v', mountPoint: '/m', capacityBytes: 1 });
      expect400(await d.req('PATCH', `/volumes/${v.body.id}`, {}), /^body: no field to change/);
      expect400(await d.req('PATCH', `/volumes/${v.body.id}`), /^body: no field to change/);
      expect400(await d.req('PATCH', `/volumes/${v.body.id}`, { label: 'x' }), /^label: unknown field/);
      expect400(
        await d.req('PATCH', `/volumes/${v.body.id}`, { capacityBytes: null }),
        /^capacityBytes: Expected number, received null/,
      );
      expect400(await d.req('PATCH', `/volumes/${v.body.id}`, { id: randomUUID() }), /^id: unknown field/);
    });

    it('a bad limit or cursor', async () => {
      for (const limit of ['0', '1001', 'abc', '1.5', '-3', ''])
        expect400(await d.req('GET', `/volumes?limit=${limit}`), /^limit: /);
      expect400(await d.req('GET', '/volumes?limit=1&limit=2'), /^limit: /);
      for (const cursor of [
        'not*base64',
        Buffer.from('["nope"]').toString('base64url'),
        Buffer.from('{"a":1}').toString('base64url'),
        'AAAA',
      ]) {
        expect400(await d.req('GET', `/entries?cursor=${encodeURIComponent(cursor)}`), /^cursor: malformed/);
      }
    });
  });

  describe('volumes', () => {
    it('creates with an assigned id, reads back, lists by owner', async () => {
      const r = await d.req('POST', '/volumes', {
        name: ' Disk ',
        mountPoint: '/mnt/d',
        capacityBytes: 1000,
        freeBytes: 10,
      });
      expect(r.status).toBe(201);
      expect(r.body).toEqual({
        id: expect.stringMatching(UUID),
        deviceId: d.deviceId,
        name: 'Disk',
        mountPoint: '/mnt/d',
        capacityBytes: 1000,
        freeBytes: 10,
        updatedAt: expect.any(String),
      });
      expect((await d.req('GET', `/volumes/${r.body.id}`)).body).toEqual(r.body);
      const mine = await d.list(`/volumes?deviceId=${d.deviceId}`);
      expect(mine.map((v) => v.id)).toContain(r.body.id);
      expect(mine.every((v) => v.deviceId === d.deviceId)).toBe(true);
      // updatedAt is the synced value stored with the row, not a local read time
      const row = await d.db
        .selectFrom('volumes')
        .select('updated_at')
        .where('id', '=', r.body.id)
        .executeTakeFirstOrThrow();
      expect(new Date(row.updated_at).toISOString()).toBe(r.body.updatedAt);
    });

    it('a create with its own id is idempotent; other content under the id is a conflict', async () => {
      const vol = { id: randomUUID(), name: 'disk', mountPoint: '/mnt/d', capacityBytes: 1000 };
      const first = await d.req('POST', '/volumes', vol);
      expect(first.status).toBe(201);
      expect(first.body.freeBytes).toBeNull();
      const again = await d.req('POST', '/volumes', vol);
      expect(again.status).toBe(200);
      expect(again.body).toEqual(first.body);
      const other = await d.req('POST', '/volumes', { ...vol, name: 'other' });
      expect(other.status).toBe(409);
      expect(other.body.message).toMatch(/different content/);
      expect((await d.req('POST', '/volumes', { ...vol, freeBytes: 5 })).status).toBe(409);
    });

    it('an id that another device owns, or that was deleted, cannot be created', async () => {
      const foreign = await peer.volume(d, other);
      const r = await d.req('POST', '/volumes', {
        id: foreign,
        name: 'peer disk',
        mountPoint: '/mnt/peer',
        capacityBytes: 100,
      });
      expect(r.status).toBe(409);
      expect(r.body.message).toMatch(/owned by device/);
      const v = await d.req('POST', '/volumes', { name: 'gone', mountPoint: '/g', capacityBytes: 1 });
      expect((await d.req('DELETE', `/volumes/${v.body.id}`)).status).toBe(204);
      const back = await d.req('POST', '/volumes', { id: v.body.id, name: 'gone', mountPoint: '/g', capacityBytes: 1 });
      expect(back.status).toBe(409);
      expect(back.body.message).toMatch(/deleted/);
    });

    it('PATCH changes the given fields and returns the record', async () => {
      const v = (await d.req('POST', '/volumes', { name: 'v', mountPoint: '/m', capacityBytes: 100, freeBytes: 50 }))
        .body;
      const p = await d.req('PATCH', `/volumes/${v.id}`, { freeBytes: 20 });
      expect(p.status).toBe(200);
      expect(p.body).toEqual({ ...v, freeBytes: 20, updatedAt: expect.any(String) });
      expect(p.body.updatedAt >= v.updatedAt).toBe(true);
      expect((await d.req('GET', `/volumes/${v.id}`)).body).toEqual(p.body);
      expect((await d.req('PATCH', `/volumes/${v.id}`, { freeBytes: null })).body.freeBytes).toBeNull();
      expect((await d.req('PATCH', `/volumes/${v.id}`, { capacityBytes: 10, freeBytes: 11 })).status).toBe(400);
    });

    it("another device's volume is readable but not writable (403); an unknown id is 404", async () => {
      const foreign = await peer.volume(d, other);
      const got = await d.req('GET', `/volumes/${foreign}`);
      expect(got.status).toBe(200);
      expect(got.body.deviceId).toBe(other);
      const p = await d.req('PATCH', `/volumes/${foreign}`, { name: 'mine now' });
      expect(p.status).toBe(403);
      expect(p.body).toEqual({
        statusCode: 403,
        error: 'Forbidden',
        message: expect.stringMatching(/owned by device/),
      });
      expect((await d.req('DELETE', `/volumes/${foreign}`)).status).toBe(403);
      expect((await d.req('GET', `/volumes/${foreign}`)).body.name).toBe('peer disk');
      const unknown = randomUUID();
      expect((await d.req('GET', `/volumes/${unknown}`)).status).toBe(404);
      expect((await d.req('PATCH', `/volumes/${unknown}`, { name: 'x' })).status).toBe(404);
      expect((await d.req('DELETE', `/volumes/${unknown}`)).status).toBe(404);
      expect((await d.list(`/volumes?deviceId=${other}`)).map((v) => v.id)).toContain(foreign);
    });

    it('deleting a volume keeps its locations, without a volume', async () => {
      const v = (await d.req('POST', '/volumes', { name: 'v', mountPoint: '/m', capacityBytes: 1 })).body;
      const l = (await d.req('POST', '/locations', { name: 'l', path: '/m/l', volumeId: v.id })).body;
      expect(l.volumeId).toBe(v.id);
      expect((await d.req('DELETE', `/volumes/${v.id}`)).status).toBe(204);
      expect((await d.req('GET', `/volumes/${v.id}`)).status).toBe(404);
      expect((await d.req('DELETE', `/volumes/${v.id}`)).status).toBe(404);
      const after = await d.req('GET', `/locations/${l.id}`);
      expect(after.status).toBe(200);
      expect(after.body.volumeId).toBeNull();
    });
  });

  describe('locations', () => {
    it('creates, repeats, patches and reads', async () => {
      const v = (await d.req('POST', '/volumes', { name: 'v', mountPoint: '/m', capacityBytes: 1 })).body;
      const loc = { id: randomUUID(), name: 'Photos', path: '/home/u/photos', volumeId: v.id };
      const c = await d.req('POST', '/locations', loc);
      expect(c.status).toBe(201);
      expect(c.body).toEqual({ ...loc, deviceId: d.deviceId, updatedAt: expect.any(String) });
      expect((await d.req('POST', '/locations', loc)).status).toBe(200);
      expect((await d.req('POST', '/locations', { ...loc, path: '/elsewhere' })).status).toBe(409);
      const p = await d.req('PATCH', `/locations/${loc.id}`, { name: 'Pictures', volumeId: null });
      expect(p.status).toBe(200);
      expect(p.body).toMatchObject({ name: 'Pictures', path: loc.path, volumeId: null });
    });

    it("a location may only sit on one of this device's volumes", async () => {
      const unknown = await d.req('POST', '/locations', { name: 'l', path: '/p', volumeId: randomUUID() });
      expect(unknown.status).toBe(404);
      expect(unknown.body.message).toMatch(/^volumeId: volumes .* not found/);
      const foreign = await peer.volume(d, other);
      const forbidden = await d.req('POST', '/locations', { name: 'l', path: '/p', volumeId: foreign });
      expect(forbidden.status).toBe(403);
      expect(forbidden.body.message).toMatch(/^volumeId: /);
      const l = await ownLocation(d);
      expect((await d.req('PATCH', `/locations/${l}`, { volumeId: foreign })).status).toBe(403);
      expect((await d.req('PATCH', `/locations/${l}`, { volumeId: randomUUID() })).status).toBe(404);
    });

    it("another device's location: 403 on writes, 409 on create with its id", async () => {
      const foreign = await peer.location(d, other);
      expect((await d.req('GET', `/locations/${foreign}`)).body.deviceId).toBe(other);
      expect((await d.req('PATCH', `/locations/${foreign}`, { name: 'x' })).status).toBe(403);
      expect((await d.req('DELETE', `/locations/${foreign}`)).status).toBe(403);
      expect(
        (await d.req('POST', '/locations', { id: foreign, name: 'peer photos', path: '/peer/photos' })).status,
      ).toBe(409);
    });

    it('deleting a location deletes its entries', async () => {
      const l = await ownLocation(d);
      const keep = await ownLocation(d);
      const items = [...Array(30)].map((_, i) => entryInput(l, i));
      expect((await d.req('POST', '/entries/batch', { items })).status).toBe(201);
      const kept = await d.req('POST', '/entries', entryInput(keep, 1));
      expect((await d.list(`/entries?locationId=${l}`)).length).toBe(30);
      expect((await d.req('DELETE', `/locations/${l}`)).status).toBe(204);
      expect((await d.req('GET', `/locations/${l}`)).status).toBe(404);
      expect(await d.list(`/entries?locationId=${l}`)).toEqual([]);
      expect((await d.req('GET', `/entries/${items[0].id}`)).status).toBe(404);
      expect((await d.req('GET', `/entries/${kept.body.id}`)).status).toBe(200);
    });
  });

  describe('entries', () => {
    it('creates with its own id, repeats idempotently, refuses other content (409)', async () => {
      const l = await ownLocation(d);
      const e = entryInput(l, 1, { modifiedAt: '2024-05-01T14:00:00+02:00' });
      const c = await d.req('POST', '/entries', e);
      expect(c.status).toBe(201);
      expect(c.body).toEqual({
        ...e,
        modifiedAt: '2024-05-01T12:00:00.000Z',
        deviceId: d.deviceId,
        updatedAt: expect.any(String),
      });
      const again = await d.req('POST', '/entries', { ...e, modifiedAt: '2024-05-01T12:00:00Z' });
      expect(again.status).toBe(200);
      expect(again.body).toEqual(c.body);
      expect((await d.req('POST', '/entries', { ...e, sizeBytes: 2 })).status).toBe(409);
      expect((await d.req('GET', `/entries/${e.id}`)).body).toEqual(c.body);
    });

    it("an entry's location must be an existing location of this device", async () => {
      const unknown = await d.req('POST', '/entries', entryInput(randomUUID(), 1));
      expect(unknown.status).toBe(404);
      expect(unknown.body.message).toMatch(/^locationId: locations .* not found/);
      const foreign = await peer.location(d, other);
      const forbidden = await d.req('POST', '/entries', entryInput(foreign, 1));
      expect(forbidden.status).toBe(403);
      expect(forbidden.body.message).toMatch(/^locationId: /);
    });

    it("PATCH edits this device's entries, may move them between its locations, 403 on others'", async () => {
      const [l1, l2] = [await ownLocation(d), await ownLocation(d)];
      const e = (await d.req('POST', '/entries', entryInput(l1, 3))).body;
      const p = await d.req('PATCH', `/entries/${e.id}`, { name: 'renamed.jpg', sizeBytes: 99, locationId: l2 });
      expect(p.status).toBe(200);
      expect(p.body).toEqual({
        ...e,
        name: 'renamed.jpg',
        sizeBytes: 99,
        locationId: l2,
        updatedAt: expect.any(String),
      });
      expect((await d.req('PATCH', `/entries/${e.id}`, { locationId: randomUUID() })).status).toBe(404);
      expect((await d.req('PATCH', `/entries/${e.id}`, { kind: 'folder' })).status).toBe(400);
      const foreignLoc = await peer.location(d, other);
      expect((await d.req('PATCH', `/entries/${e.id}`, { locationId: foreignLoc })).status).toBe(403);
      const foreign = await peer.entry(d, other, foreignLoc);
      expect((await d.req('PATCH', `/entries/${foreign}`, { name: 'x' })).status).toBe(403);
      expect((await d.req('DELETE', `/entries/${foreign}`)).status).toBe(403);
      expect((await d.req('GET', `/entries/${foreign}`)).body).toMatchObject({
        id: foreign,
        deviceId: other,
        sizeBytes: 7,
      });
    });

    it('DELETE removes the entry; its id cannot be created again', async () => {
      const l = await ownLocation(d);
      const e = entryInput(l, 4);
      await d.req('POST', '/entries', e);
      expect((await d.req('DELETE', `/entries/${e.id}`)).status).toBe(204);
      expect((await d.req('GET', `/entries/${e.id}`)).status).toBe(404);
      expect((await d.req('POST', '/entries', e)).status).toBe(409);
    });

    it('lists page by id: every entry exactly once, filters by location and owner', async () => {
      const l = await ownLocation(d);
      const items = [...Array(53)].map((_, i) => entryInput(l, i));
      expect((await d.req('POST', '/entries/batch', { items })).status).toBe(201);
      const seen: string[] = [];
      let cursor: string | null = null;
      let pages = 0;
      do {
        const r: { status: number; body: any } = await d.req(
          'GET',
          `/entries?locationId=${l}&limit=7${cursor ? `&cursor=${cursor}` : ''}`,
        );
        expect(r.status).toBe(200);
        expect(r.body.items.length).toBeLessThanOrEqual(7);
        seen.push(...r.body.items.map((e: any) => e.id));
        cursor = r.body.nextCursor;
        pages++;
      } while (cursor);
      expect(pages).toBe(8);
      expect(seen).toEqual(items.map((e) => e.id as string).sort());
      const first = await d.req('GET', `/entries?locationId=${l}`);
      expect(first.body.items).toHaveLength(53);
      expect(first.body.nextCursor).toBeNull();
      expect((await d.req('GET', `/entries?locationId=${l}&limit=53`)).body.nextCursor).toBeNull();
      const stranger = randomUUID();
      const foreignLoc = await peer.location(d, stranger);
      const foreign = await peer.entry(d, stranger, foreignLoc);
      expect((await d.list(`/entries?deviceId=${stranger}`)).map((e) => e.id)).toEqual([foreign]);
      expect(await d.list(`/entries?deviceId=${d.deviceId}&locationId=${foreignLoc}`)).toEqual([]);
    });
  });
});
