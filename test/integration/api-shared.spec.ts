import { randomUUID } from 'node:crypto';
import { sql } from 'kysely';
import { dropTestDatabases } from '../support/databases';
import type { TestDevice } from '../support/device-harness';
import { entryInput, MODES, ownLocation, peer, startApiDevice } from './api-fixtures';

/** The local HTTP API of docs/http.md for shared data: tags, albums, metadata, memberships. */

afterAll(() => dropTestDatabases());

describe.each(MODES)('HTTP API: shared data (%s)', (mode) => {
  let d: TestDevice;
  let location: string;

  beforeAll(async () => {
    d = await startApiDevice(mode);
    location = await ownLocation(d);
  });
  afterAll(async () => {
    await d?.close();
  });

  const newEntry = async (): Promise<any> => {
    const r = await d.req('POST', '/entries', entryInput(location, Math.floor(Math.random() * 1e6)));
    expect(r.status).toBe(201);
    return r.body;
  };
  const changeLog = () => d.db.selectFrom('shared_changes').selectAll().orderBy('hlc').execute();

  describe('tags', () => {
    it('a create writes the tag and exactly one change-log row, in one transaction', async () => {
      const before = await changeLog();
      const tag = { id: randomUUID(), name: 'Holiday', color: 'red' };
      const r = await d.req('POST', '/tags', tag);
      expect(r.status).toBe(201);
      expect(r.body).toEqual(tag);
      const after = await changeLog();
      expect(after).toHaveLength(before.length + 1);
      const change = after[after.length - 1];
      expect(change).toMatchObject({
        model: 'tags',
        record_key: tag.id,
        op: 'set',
        fields: { name: 'Holiday', color: 'red' },
      });
      const row = await d.db.selectFrom('tags').selectAll().where('id', '=', tag.id).executeTakeFirstOrThrow();
      expect(row.updated_hlc).toBe(change.hlc);
      expect(row.clocks).toEqual({ name: change.hlc, color: change.hlc });
    });

    it('a tag whose change-log row cannot be written is not written either', async () => {
      await sql`create function refuse_change() returns trigger language plpgsql as $$ begin raise exception 'change log refused'; end $$`.execute(
        d.db,
      );
      await sql`create trigger refuse_change before insert on shared_changes for each row execute function refuse_change()`.execute(
        d.db,
      );
      try {
        const tag = { id: randomUUID(), name: 'Lost' };
        expect((await d.req('POST', '/tags', tag)).status).toBe(500);
        expect(await d.db.selectFrom('tags').select('id').where('id', '=', tag.id).executeTakeFirst()).toBeUndefined();
        expect((await d.req('GET', `/tags/${tag.id}`)).status).toBe(404);
      } finally {
        await sql`drop trigger refuse_change on shared_changes`.execute(d.db);
        await sql`drop function refuse_change()`.execute(d.db);
      }
    });

    it('a repeated create returns the same tag and writes nothing; other content is a conflict', async () => {
      const tag = { id: randomUUID(), name: 'Work' };
      const first = await d.req('POST', '/tags', tag);
      expect(first.status).toBe(201);
      expect(first.body).toEqual({ ...tag, color: null });
      const log = (await changeLog()).length;
      const again = await d.req('POST', '/tags', tag);
      expect(again.status).toBe(200);
      expect(again.body).toEqual(first.body);
      expect((await d.req('POST', '/tags', { ...tag, color: null })).status).toBe(200);
      expect((await changeLog()).length).toBe(log);
      const other = await d.req('POST', '/tags', { ...tag, color: 'blue' });
      expect(other.status).toBe(409);
      expect((await changeLog()).length).toBe(log);
    });

    it('a create without an id gets one; names are trimmed and required', async () => {
      const r = await d.req('POST', '/tags', { name: '  Trip  ' });
      expect(r.status).toBe(201);
      expect(r.body).toEqual({ id: expect.stringMatching(/^[0-9a-f-]{36}$/), name: 'Trip', color: null });
      expect((await d.req('GET', `/tags/${r.body.id}`)).body).toEqual(r.body);
      expect((await d.req('POST', '/tags', { name: '' })).body.message).toMatch(/^name: must not be empty/);
      expect((await d.req('POST', '/tags', { color: 'red' })).body.message).toMatch(/^name: required/);
    });

    it('PATCH changes the given fields and keeps the others', async () => {
      const tag = (await d.req('POST', '/tags', { name: 'Holiday', color: 'red' })).body;
      const p = await d.req('PATCH', `/tags/${tag.id}`, { color: 'blue' });
      expect(p.status).toBe(200);
      expect(p.body).toEqual({ id: tag.id, name: 'Holiday', color: 'blue' });
      expect((await d.req('PATCH', `/tags/${tag.id}`, { name: 'Holidays' })).body).toEqual({
        id: tag.id,
        name: 'Holidays',
        color: 'blue',
      });
      expect((await d.req('PATCH', `/tags/${tag.id}`, { color: null })).body.color).toBeNull();
      expect((await d.req('GET', `/tags/${tag.id}`)).body).toEqual({ id: tag.id, name: 'Holidays', color: null });
      // the same values again are accepted
      expect((await d.req('PATCH', `/tags/${tag.id}`, { name: 'Holidays' })).status).toBe(200);
      expect((await d.req('PATCH', `/tags/${tag.id}`, {})).status).toBe(400);
      expect((await d.req('PATCH', `/tags/${tag.id}`, { name: 'x', size: 1 })).body.message).toMatch(
        /^size: unknown field/,
      );
      expect((await d.req('PATCH', `/tags/${randomUUID()}`, { name: 'x' })).status).toBe(404);
    });

    it('a deleted tag reads as 404 everywhere and its id cannot be created again', async () => {
      const tag = (await d.req('POST', '/tags', { name: 'Old' })).body;
      expect((await d.req('DELETE', `/tags/${tag.id}`)).status).toBe(204);
      expect((await d.req('GET', `/tags/${tag.id}`)).status).toBe(404);
      expect((await d.req('PATCH', `/tags/${tag.id}`, { name: 'back' })).status).toBe(404);
      expect((await d.req('DELETE', `/tags/${tag.id}`)).status).toBe(404);
      expect((await d.req('GET', `/tags/${tag.id}/entries`)).status).toBe(404);
      const again = await d.req('POST', '/tags', { id: tag.id, name: 'Old' });
      expect(again.status).toBe(409);
      expect(again.body.message).toMatch(/deleted/);
      expect((await d.list('/tags')).map((t) => t.id)).not.toContain(tag.id);
      expect((await d.req('DELETE', `/tags/${randomUUID()}`)).status).toBe(404);
    });

    it('lists every live tag exactly once, paged by id', async () => {
      const made = [];
      for (let i = 0; i < 12; i++) made.push((await d.req('POST', '/tags', { name: `t${i}` })).body.id);
      const ids: string[] = [];
      let cursor: string | null = null;
      do {
        const r: { body: any } = await d.req('GET', `/tags?limit=5${cursor ? `&cursor=${cursor}` : ''}`);
        ids.push(...r.body.items.map((t: any) => t.id));
        cursor = r.body.nextCursor;
      } while (cursor);
      expect(new Set(ids).size).toBe(ids.length);
      expect([...ids].sort()).toEqual(ids);
      for (const id of made) expect(ids).toContain(id);
    });
  });

  describe('albums', () => {
    it('create, repeat, patch, delete', async () => {
      const album = { id: randomUUID(), name: 'Trip', description: 'Summer' };
      expect((await d.req('POST', '/albums', album)).status).toBe(201);
      const log = (await changeLog()).length;
      expect((await d.req('POST', '/albums', album)).body).toEqual(album);
      expect((await changeLog()).length).toBe(log);
      expect((await d.req('POST', '/albums', { ...album, description: null })).status).toBe(409);
      expect((await d.req('PATCH', `/albums/${album.id}`, { name: 'Trip 2024' })).body).toEqual({
        ...album,
        name: 'Trip 2024',
      });
      expect((await d.req('GET', `/albums/${album.id}`)).body).toEqual({ ...album, name: 'Trip 2024' });
      const assigned = await d.req('POST', '/albums', { name: 'Other' });
      expect(assigned.body).toEqual({ id: expect.any(String), name: 'Other', description: null });
      expect((await d.list('/albums')).map((a) => a.id)).toEqual(expect.arrayContaining([album.id, assigned.body.id]));
      expect((await d.req('DELETE', `/albums/${album.id}`)).status).toBe(204);
      expect((await d.req('GET', `/albums/${album.id}`)).status).toBe(404);
      expect((await d.req('POST', '/albums', album)).status).toBe(409);
      expect((await d.list('/albums')).map((a) => a.id)).not.toContain(album.id);
      expect((await d.req('POST', '/albums', { name: 'x', description: 5 })).body.message).toMatch(
        /^description: Expected string/,
      );
    });
  });

  describe('metadata', () => {
    it('PUT sets the given fields and leaves the others as they are', async () => {
      const e = await newEntry();
      const m1 = await d.req('PUT', `/entries/${e.id}/metadata`, { favorite: true });
      expect(m1.status).toBe(200);
      expect(m1.body).toEqual({ entryId: e.id, favorite: true, hidden: false, notes: null });
      const m2 = await d.req('PUT', `/entries/${e.id}/metadata`, { notes: 'hi' });
      expect(m2.body).toEqual({ entryId: e.id, favorite: true, hidden: false, notes: 'hi' });
      const m3 = await d.req('PUT', `/entries/${e.id}/metadata`, { hidden: true, favorite: false });
      expect(m3.body).toEqual({ entryId: e.id, favorite: false, hidden: true, notes: 'hi' });
      expect((await d.req('GET', `/entries/${e.id}/metadata`)).body).toEqual(m3.body);
      expect((await d.req('PUT', `/entries/${e.id}/metadata`, {})).body).toEqual(m3.body);
      expect((await d.req('PUT', `/entries/${e.id}/metadata`, { notes: null })).body.notes).toBeNull();
    });

    it('an entry nobody annotated has the default metadata; an unknown entry is 404', async () => {
      const e = await newEntry();
      expect((await d.req('GET', `/entries/${e.id}/metadata`)).body).toEqual({
        entryId: e.id,
        favorite: false,
        hidden: false,
        notes: null,
      });
      const unknown = randomUUID();
      expect((await d.req('GET', `/entries/${unknown}/metadata`)).status).toBe(404);
      expect((await d.req('PUT', `/entries/${unknown}/metadata`, { favorite: true })).status).toBe(404);
      expect((await d.req('PUT', `/entries/${e.id}/metadata`, { favorite: 1 })).body.message).toMatch(
        /^favorite: Expected boolean/,
      );
    });

    it('any device may annotate any entry, whoever owns it', async () => {
      const foreignLocation = await peer.location(d, randomUUID());
      const foreign = await peer.entry(d, randomUUID(), foreignLocation);
      const r = await d.req('PUT', `/entries/${foreign}/metadata`, { favorite: true });
      expect(r.status).toBe(200);
      expect(r.body.favorite).toBe(true);
    });

    it('GET /metadata lists every entry that has metadata, paged by entry id', async () => {
      const annotated = [];
      for (let i = 0; i < 7; i++) {
        const e = await newEntry();
        await d.req('PUT', `/entries/${e.id}/metadata`, { notes: `n${i}` });
        annotated.push(e.id);
      }
      const plain = await newEntry();
      const all = await d.list('/metadata');
      const ids = all.map((m) => m.entryId);
      for (const id of annotated) expect(ids).toContain(id);
      expect(ids).not.toContain(plain.id);
      expect(new Set(ids).size).toBe(ids.length);
      const page = await d.req('GET', '/metadata?limit=3');
      expect(page.body.items).toHaveLength(3);
      expect(Object.keys(page.body.items[0]).sort()).toEqual(['entryId', 'favorite', 'hidden', 'notes']);
      const rest = await d.req('GET', `/metadata?limit=1000&cursor=${page.body.nextCursor}`);
      expect([...page.body.items, ...rest.body.items].map((m: any) => m.entryId)).toEqual(ids);
    });
  });

  describe.each([
    ['tags', 'tag'],
    ['albums', 'album'],
  ])('memberships of %s', (collection) => {
    const create = async () =>
      (await d.req('POST', `/${collection}`, { name: `c-${randomUUID().slice(0, 4)}` })).body.id as string;

    it('PUT adds an entry, DELETE takes it out; both are idempotent', async () => {
      const id = await create();
      const [e1, e2] = [await newEntry(), await newEntry()];
      expect((await d.req('PUT', `/${collection}/${id}/entries/${e1.id}`)).status).toBe(204);
      expect((await d.req('PUT', `/${collection}/${id}/entries/${e1.id}`)).status).toBe(204);
      expect((await d.req('PUT', `/${collection}/${id}/entries/${e2.id}`)).status).toBe(204);
      const members = await d.list(`/${collection}/${id}/entries`);
      expect(members).toEqual([e1, e2].sort((a, b) => (a.id < b.id ? -1 : 1)));
      expect((await d.req('DELETE', `/${collection}/${id}/entries/${e1.id}`)).status).toBe(204);
      expect((await d.req('DELETE', `/${collection}/${id}/entries/${e1.id}`)).status).toBe(204);
      expect(await d.list(`/${collection}/${id}/entries`)).toEqual([e2]);
      expect((await d.req('PUT', `/${collection}/${id}/entries/${e1.id}`)).status).toBe(204);
      expect((await d.list(`/${collection}/${id}/entries`)).map((e) => e.id).sort()).toEqual([e1.id, e2.id].sort());
    });

    it('needs a live record (404) and an existing entry (404)', async () => {
      const id = await create();
      const e = await newEntry();
      const unknown = randomUUID();
      expect((await d.req('PUT', `/${collection}/${unknown}/entries/${e.id}`)).status).toBe(404);
      expect((await d.req('DELETE', `/${collection}/${unknown}/entries/${e.id}`)).status).toBe(404);
      expect((await d.req('GET', `/${collection}/${unknown}/entries`)).status).toBe(404);
      const missing = await d.req('PUT', `/${collection}/${id}/entries/${unknown}`);
      expect(missing.status).toBe(404);
      expect(missing.body.message).toMatch(/^entries .* not found/);
      expect((await d.req('DELETE', `/${collection}/${id}/entries/${unknown}`)).status).toBe(404);
      await d.req('PUT', `/${collection}/${id}/entries/${e.id}`);
      expect((await d.req('DELETE', `/${collection}/${id}`)).status).toBe(204);
      expect((await d.req('PUT', `/${collection}/${id}/entries/${e.id}`)).status).toBe(404);
      expect((await d.req('GET', `/${collection}/${id}/entries`)).status).toBe(404);
    });

    it("lists member entries exactly once, paged by entry id, including other devices' entries", async () => {
      const id = await create();
      const items = [...Array(9)].map((_, i) => entryInput(location, 1000 + i));
      const batch = await d.req('POST', '/entries/batch', { items });
      const foreignLocation = await peer.location(d, randomUUID());
      const foreign = await peer.entry(d, randomUUID(), foreignLocation);
      for (const e of items) await d.req('PUT', `/${collection}/${id}/entries/${e.id}`);
      expect((await d.req('PUT', `/${collection}/${id}/entries/${foreign}`)).status).toBe(204);
      const ids: string[] = [];
      let cursor: string | null = null;
      do {
        const r: { body: any } = await d.req(
          'GET',
          `/${collection}/${id}/entries?limit=4${cursor ? `&cursor=${cursor}` : ''}`,
        );
        ids.push(...r.body.items.map((e: any) => e.id));
        cursor = r.body.nextCursor;
      } while (cursor);
      expect(ids).toEqual([...items.map((e) => e.id as string), foreign].sort());
      // the items are entry objects, as GET /entries/:id shows them
      const first = (await d.req('GET', `/${collection}/${id}/entries?limit=1`)).body.items[0];
      expect(first).toEqual((await d.req('GET', `/entries/${first.id}`)).body);
      expect(batch.status).toBe(201);
    });
  });
});
