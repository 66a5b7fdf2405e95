import fc from 'fast-check';
import {
  AccessPolicy,
  AccessRequest,
  cookieValue,
  decideAccess,
  hostnameOf,
  isLoopbackHost,
  normalizeOrigin,
  secretsEqual,
  sessionValue,
} from '../../src/library/http/api-access';

/** docs/http.md "Who may call the API": the pure rules the one HTTP guard applies. */
const PORT = 3001;
const TOKEN = 'a-long-random-token';
const open: AccessPolicy = { token: null, allowedOrigins: new Set() };
const closed: AccessPolicy = { token: TOKEN, allowedOrigins: new Set(['https://photos.example.com']) };
const req = (r: Partial<AccessRequest>): AccessRequest => ({
  method: 'GET',
  path: '/sync/status',
  port: PORT,
  host: `127.0.0.1:${PORT}`,
  ...r,
});
const kind = (r: Partial<AccessRequest>, p: AccessPolicy) => {
  const d = decideAccess(req(r), p);
  return d.kind === 'deny' ? d.status : d.kind;
};

describe('isLoopbackHost', () => {
  it.each(['127.0.0.1', '127.255.0.9', '::1', '[::1]', 'localhost', 'LOCALHOST', '0:0:0:0:0:0:0:1'])('%s: yes', (h) =>
    expect(isLoopbackHost(h)).toBe(true),
  );
  it.each(['0.0.0.0', '::', '192.168.1.2', '128.0.0.1', 'nas.local', 'localhost.evil.com', '::ffff:10.0.0.1'])(
    '%s: no',
    (h) => expect(isLoopbackHost(h)).toBe(false),
  );
});

describe('normalizeOrigin and hostnameOf', () => {
  it.each([
    ['HTTP://LocalHost:3001', 'http://localhost:3001'],
    ['https://a.example:443', 'https://a.example'],
    ['http://[::1]:3001', 'http://[::1]:3001'],
    ['https://a.example/', null],
    ['https://a.example/app', null],
    ['null', null],
    ['a.example', null],
    ['https://user@a.example', null],
  ])('%s → %s', (raw, expected) => expect(normalizeOrigin(raw)).toBe(expected));

  it.each([
    ['localhost:3001', 'localhost'],
    ['[::1]:8080', '[::1]'],
    ['127.0.0.1', '127.0.0.1'],
    ['Evil.Example:3001', 'evil.example'],
    ['localhost@evil.example', null],
    [undefined, null],
  ])('Host %s → %s', (h, expected) => expect(hostnameOf(h)).toBe(expected));
});

describe('secretsEqual', () => {
  it('is equality of strings, whatever their lengths', () => {
    fc.assert(fc.property(fc.string(), fc.string(), (a, b) => secretsEqual(a, b) === (a === b)));
    fc.assert(fc.property(fc.string(), (a) => secretsEqual(a, a)));
  });
});

describe('cookieValue', () => {
  it('finds one cookie among several', () => {
    expect(cookieValue('a=1; device_session_3001=xyz; b=2', 'device_session_3001')).toBe('xyz');
    expect(cookieValue('device_session_30011=xyz', 'device_session_3001')).toBeUndefined();
    expect(cookieValue(undefined, 'x')).toBeUndefined();
  });
});

describe('decideAccess without a token (loopback)', () => {
  it.each(['localhost', 'localhost:9999', '127.0.0.1:3001', '[::1]:3001', '[::1]'])('Host %s: allowed', (host) =>
    expect(kind({ host }, open)).toBe('allow'),
  );
  it.each(['evil.example:3001', '192.168.1.2:3001', '127.0.0.2:3001', 'localhost.evil.example', ''])(
    'Host %s: 403 (DNS rebinding)',
    (host) => expect(kind({ host }, open)).toBe(403),
  );
  it('keeps the health routes reachable whatever the Host', () => {
    for (const path of ['/health', '/health/live', '/health/ready', '/health/'])
      expect(kind({ path, host: 'device-a:3001' }, open)).toBe('allow');
    expect(kind({ path: '/healthz', host: 'device-a:3001' }, open)).toBe(403);
  });
  it('ignores ?token= on the status page', () => {
    expect(kind({ path: '/', loginToken: 'x' }, open)).toBe('allow');
  });
});

describe('decideAccess: Origin', () => {
  it.each([`http://127.0.0.1:${PORT}`, `http://localhost:${PORT}`, `http://[::1]:${PORT}`])(
    'own %s: allowed',
    (origin) => expect(kind({ method: 'POST', path: '/tags', origin }, open)).toBe('allow'),
  );
  it.each(['http://evil.example', `http://localhost:${PORT + 1}`, `https://localhost:${PORT}`, 'null', 'garbage'])(
    'foreign %s: 403, also on health routes and with the token',
    (origin) => {
      expect(kind({ method: 'POST', path: '/tags', origin }, open)).toBe(403);
      expect(kind({ path: '/health', origin }, open)).toBe(403);
      expect(kind({ origin, authorization: `Bearer ${TOKEN}` }, closed)).toBe(403);
    },
  );
  it('allows API_ALLOWED_ORIGINS (normalized)', () => {
    expect(kind({ origin: 'https://photos.example.com:443', authorization: `Bearer ${TOKEN}` }, closed)).toBe('allow');
    expect(kind({ origin: 'https://photos.example.com' }, open)).toBe(403);
  });
  it("with a token, allows the origin of the request's own Host (a device behind a proxy)", () => {
    const r = { host: 'nas.example:8443', origin: 'https://nas.example:8443' };
    expect(kind({ ...r, authorization: `Bearer ${TOKEN}` }, closed)).toBe('allow');
    expect(kind(r, closed)).toBe(401);
    expect(kind(r, open)).toBe(403);
  });
  it('checks Origin before Host and token', () => {
    expect(kind({ host: 'evil.example', origin: 'http://evil.example' }, open)).toBe(403);
    expect(decideAccess(req({ origin: 'http://evil.example' }), closed)).toMatchObject({ message: /Origin/ });
  });
});

describe('decideAccess with a token', () => {
  it('needs Authorization: Bearer <token> on every route but health', () => {
    for (const path of ['/', '/tags', '/sync/status', '/metrics', '/nope', '/libraries/x/entries', '/health/x'])
      expect(kind({ path }, closed)).toBe(401);
    for (const path of ['/health', '/health/live', '/health/ready']) expect(kind({ path }, closed)).toBe('allow');
    expect(kind({ authorization: `Bearer ${TOKEN}` }, closed)).toBe('allow');
    expect(kind({ authorization: `bearer ${TOKEN}` }, closed)).toBe('allow');
    expect(kind({ authorization: `Bearer ${TOKEN}x` }, closed)).toBe(401);
    expect(kind({ authorization: TOKEN }, closed)).toBe(401);
    expect(kind({ authorization: `Basic ${TOKEN}` }, closed)).toBe(401);
  });
  it('does not check Host: a device behind a proxy answers under any name', () => {
    expect(kind({ host: 'nas.example', authorization: `Bearer ${TOKEN}` }, closed)).toBe('allow');
  });
  it('logs in at GET /?token= with a cookie derived from the token, which then stands for it', () => {
    const d = decideAccess(req({ path: '/', loginToken: TOKEN }), closed);
    expect(d).toEqual({ kind: 'login', cookie: `device_session_${PORT}`, value: sessionValue(TOKEN) });
    expect(sessionValue(TOKEN)).not.toContain(TOKEN);
    expect(kind({ cookie: `device_session_${PORT}=${sessionValue(TOKEN)}` }, closed)).toBe('allow');
    expect(kind({ cookie: `device_session_${PORT + 1}=${sessionValue(TOKEN)}` }, closed)).toBe(401);
    expect(kind({ cookie: `device_session_${PORT}=${sessionValue('other')}` }, closed)).toBe(401);
    expect(kind({ path: '/', loginToken: 'wrong' }, closed)).toBe(401);
    expect(kind({ path: '/', loginToken: [TOKEN, TOKEN] }, closed)).toBe(401);
    // only the status page logs in
    expect(kind({ path: '/tags', loginToken: TOKEN }, closed)).toBe(401);
  });
});
