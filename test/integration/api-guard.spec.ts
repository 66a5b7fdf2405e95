import { randomUUID } from 'node:crypto';
import type { LoggerService } from '@nestjs/common';
import { createTestDatabase, dropTestDatabases } from '../support/databases';
import { http, startTestDevice, TestDevice } from '../support/device-harness';
import { rawRequest } from '../support/raw-http';

/**
 * docs/http.md "Who may call the API", against real devices (Nest apps on Postgres): the token, the
 * status page's login cookie, the Host check against DNS rebinding and the Origin check against
 * cross-site writes, on every route group, unknown routes included.
 */

const TOKEN = `guard-${randomUUID()}`;
const ALLOWED = 'https://photos.example.com';
const NAME = `guard<b>&"'`;

/** Every line the device logs, whatever its level. */
class CapturingLogger implements LoggerService {
  readonly lines: string[] = [];
  private add = (...args: unknown[]) => void this.lines.push(args.map((a) => String(a)).join(' '));
  log = this.add;
  error = this.add;
  warn = this.add;
  debug = this.add;
  verbose = this.add;
  fatal = this.add;
}

const logs = new CapturingLogger();
let closed: TestDevice; // API_TOKEN set
let open: TestDevice; // loopback only, no token

beforeAll(async () => {
  [closed, open] = await Promise.all([
    startTestDevice({
      name: NAME,
      libraryId: randomUUID(),
      databaseUrl: await createTestDatabase('guard'),
      syncEnabled: false,
      apiToken: TOKEN,
      apiAllowedOrigins: [ALLOWED],
      logger: logs,
    }),
    startTestDevice({
      libraryId: randomUUID(),
      databaseUrl: await createTestDatabase('guard'),
      syncEnabled: false,
      apiAllowedOrigins: [ALLOWED],
    }),
  ]);
});

afterAll(async () => {
  await closed?.close();
  await open?.close();
  // no line the device logged during the whole file holds the token
  expect(logs.lines.filter((l) => l.includes(TOKEN))).toEqual([]);
  await dropTestDatabases();
});

const auth = { authorization: `Bearer ${TOKEN}` };
const id = () => randomUUID();

/** One route of each group, unknown ones and the status page included. */
const ROUTES: [method: string, path: string, body?: unknown][] = [
  ['GET', '/'],
  ['GET', '/entries'],
  ['POST', '/entries', {}],
  ['GET', `/entries/${id()}/metadata`],
  ['GET', '/volumes'],
  ['POST', '/volumes', {}],
  ['GET', '/locations'],
  ['GET', '/tags'],
  ['POST', '/tags', { name: 'nope' }],
  ['PATCH', `/tags/${id()}`, { name: 'nope' }],
  ['GET', '/albums'],
  ['DELETE', `/albums/${id()}`],
  ['PUT', `/tags/${id()}/entries/${id()}`],
  ['GET', `/albums/${id()}/entries`],
  ['GET', '/metadata'],
  ['GET', '/sync/status'],
  ['GET', '/sync/digest'],
  ['POST', '/sync/invites', {}],
  ['DELETE', `/sync/peers/${id()}`],
  ['GET', '/metrics'],
  ['GET', '/no-such-route'],
  ['GET', `/libraries/${id()}/entries`],
  ['GET', '/libraries'],
  ['POST', '/libraries', {}],
  ['POST', `/libraries/${id()}/close`],
  ['DELETE', `/libraries/${id()}`],
];

/** As objects: it.each would take a row's missing body for jest's `done` callback. */
const ROUTE_CASES = ROUTES.map(([method, path, body]) => ({ method, path, body }));

describe('with API_TOKEN', () => {
  it.each(ROUTE_CASES)(
    '$method $path: 401 with WWW-Authenticate: Bearer without the token or with a wrong one',
    async ({ method: m, path: p, body: b }) => {
      for (const headers of [
        {} as Record<string, string>,
        { authorization: `Bearer ${TOKEN}x` },
        { authorization: 'Bearer ' },
        { cookie: `token=${TOKEN}` },
      ]) {
        const r = await rawRequest(`${closed.url}${p}`, m, headers, b);
        expect({ status: r.status, body: r.body, www: r.headers['www-authenticate'] }).toEqual({
          status: 401,
          body: { statusCode: 401, error: 'Unauthorized', message: expect.any(String) },
          www: 'Bearer',
        });
      }
    },
  );

  it('nothing was written by the refused requests', async () => {
    expect((await closed.req('GET', '/tags')).body.items).toEqual([]);
  });

  it.each(ROUTE_CASES.filter((r) => r.method === 'GET'))(
    '$method $path: served with the token',
    async ({ path: p }) => {
      const r = await rawRequest(`${closed.url}${p}`, 'GET', auth);
      expect(r.status).not.toBe(401);
      expect(r.status).not.toBe(403);
      // the rest are unknown ids or routes: 404 from their handlers
      if (!/[0-9a-f]{8}-|no-such/.test(p)) expect(r.status).toBe(200);
    },
  );

  it('writes with the token', async () => {
    const tag = await http(closed.url, 'POST', '/tags', { name: 'kept' }, 10_000, auth);
    expect(tag.status).toBe(201);
    expect((await closed.req('GET', `/tags/${tag.body.id}`)).body).toMatchObject({ name: 'kept' });
  });

  it.each(['/health', '/health/live', '/health/ready'])('%s needs no token (and no 401)', async (p) => {
    const r = await rawRequest(`${closed.url}${p}`, 'GET', { host: 'device-a:3001' });
    expect(r.status).not.toBe(401);
    expect(r.status).not.toBe(403);
    if (p === '/health') expect(r.status).toBe(200);
  });

  it('GET /?token= logs in: an HttpOnly, SameSite=Strict cookie and 303 to /, then the cookie stands for the token', async () => {
    const login = await rawRequest(`${closed.url}/?token=${encodeURIComponent(TOKEN)}`, 'GET', {});
    expect(login.status).toBe(303);
    expect(login.headers.location).toBe('/');
    const setCookie = (login.headers['set-cookie'] as string[])[0];
    const cookieName = `device_session_${closed.port}`;
    expect(setCookie).toMatch(new RegExp(`^${cookieName}=[^;]+`));
    expect(setCookie).toMatch(/; HttpOnly/);
    expect(setCookie).toMatch(/; SameSite=Strict/);
    expect(setCookie).toMatch(/; Path=\//);
    expect(setCookie).not.toContain(TOKEN);
    const cookie = setCookie.split(';')[0];

    const status = await rawRequest(`${closed.url}/sync/status`, 'GET', { cookie });
    expect(status.status).toBe(200);
    expect(status.body.deviceId).toBe(closed.deviceId);
    const page = await rawRequest(`${closed.url}/`, 'GET', { cookie: `other=1; ${cookie}` });
    expect(page.status).toBe(200);
    expect(page.headers['content-type']).toMatch(/^text\/html/);
    // a cookie for another port, or a forged value, is nothing
    const [, value] = cookie.split('=');
    expect((await rawRequest(`${closed.url}/sync/status`, 'GET', { cookie: `device_session_1=${value}` })).status).toBe(
      401,
    );
    expect((await rawRequest(`${closed.url}/sync/status`, 'GET', { cookie: `${cookieName}=${value}x` })).status).toBe(
      401,
    );
  });

  it('GET /?token= with a wrong token is 401 and sets no cookie', async () => {
    const r = await rawRequest(`${closed.url}/?token=wrong`, 'GET', {});
    expect(r.status).toBe(401);
    expect(r.headers['set-cookie']).toBeUndefined();
  });

  it('the status page shows the device, escaped, and refreshes from /sync/status with its cookie', async () => {
    const r = await rawRequest(`${closed.url}/`, 'GET', auth);
    expect(r.status).toBe(200);
    const html = r.body as string;
    expect(html).toContain('guard&lt;b&gt;&amp;&quot;&#39;');
    expect(html).not.toContain('<b>');
    expect(html).toContain(closed.deviceId);
    expect(html).toContain(closed.libraryId);
    expect(html).toContain("fetch(base + '/sync/status', { credentials: 'same-origin'");
    expect(html).toContain('data-base=""');
    expect(html).not.toContain(TOKEN);
    expect(r.headers['content-security-policy']).toMatch(/script-src 'nonce-/);
  });

  it('answers under any Host (behind a proxy), but still refuses a foreign Origin', async () => {
    expect((await rawRequest(`${closed.url}/sync/status`, 'GET', { ...auth, host: 'nas.example' })).status).toBe(200);
    const r = await rawRequest(
      `${closed.url}/tags`,
      'POST',
      { ...auth, origin: 'https://evil.example' },
      { name: 'x' },
    );
    expect(r.status).toBe(403);
    const proxied = { ...auth, host: 'nas.example:8443', origin: 'https://nas.example:8443' };
    expect((await rawRequest(`${closed.url}/sync/status`, 'GET', proxied)).status).toBe(200);
    expect((await rawRequest(`${closed.url}/sync/status`, 'GET', { ...auth, origin: ALLOWED })).status).toBe(200);
  });
});

describe('without API_TOKEN (loopback only)', () => {
  it.each(['evil.example', `evil.example:${0}`, '192.168.1.5', 'localhost.evil.example', '127.0.0.2'])(
    'Host %s: 403 on every route (DNS rebinding), and nothing is written',
    async (host) => {
      for (const [m, p, b] of ROUTES) {
        const r = await rawRequest(`${open.url}${p}`, m, { host }, b);
        expect({ route: `${m} ${p}`, status: r.status, error: r.body?.error }).toEqual({
          route: `${m} ${p}`,
          status: 403,
          error: 'Forbidden',
        });
      }
      expect((await open.req('GET', '/tags')).body.items).toEqual([]);
    },
  );

  it.each(['localhost', 'localhost:1', '127.0.0.1', '127.0.0.1:80', '[::1]', '[::1]:3001'])(
    'Host %s (any port): served',
    async (host) => {
      const r = await rawRequest(`${open.url}/sync/status`, 'GET', { host });
      expect(r.status).toBe(200);
    },
  );

  it('keeps the health routes reachable under any Host (container health checks)', async () => {
    expect((await rawRequest(`${open.url}/health`, 'GET', { host: 'device-a:3001' })).status).toBe(200);
  });

  it.each(['https://evil.example', 'null', `http://localhost:1`, 'http://127.0.0.1'])(
    'Origin %s: 403 before any handler, and the tag is not written',
    async (origin) => {
      const tagId = randomUUID();
      const r = await rawRequest(`${open.url}/tags`, 'POST', { origin }, { id: tagId, name: 'csrf' });
      expect(r.status).toBe(403);
      expect(r.body).toMatchObject({ statusCode: 403, error: 'Forbidden' });
      expect((await open.req('GET', `/tags/${tagId}`)).status).toBe(404);
    },
  );

  it('Origin of the device itself, or in API_ALLOWED_ORIGINS: served', async () => {
    for (const origin of [`http://127.0.0.1:${open.port}`, `http://localhost:${open.port}`, ALLOWED]) {
      const tagId = randomUUID();
      const r = await rawRequest(`${open.url}/tags`, 'POST', { origin }, { id: tagId, name: origin });
      expect({ origin, status: r.status }).toEqual({ origin, status: 201 });
      expect((await open.req('GET', `/tags/${tagId}`)).body).toMatchObject({ name: origin });
    }
  });

  it('requests without Origin (scripts, curl) are unaffected, and need no token', async () => {
    expect((await open.req('GET', '/sync/status')).status).toBe(200);
  });
});
