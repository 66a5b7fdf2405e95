import { Exit, runUntilExit as runToExit } from '../support/exit';
import { randomUUID } from 'node:crypto';
import { existsSync } from 'node:fs';
import net from 'node:net';
import { networkInterfaces } from 'node:os';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Client } from 'pg';
import { createEmptyDatabase, createTestDatabase, dropTestDatabases, natsUrl, tempDataDir } from '../support/databases';
import { DeviceProcess, http, waitFor } from '../support/device-harness';
import { portOpen } from '../support/services';
import { rawRequest } from '../support/raw-http';

/**
 * The device as a real process (dist/main.js), exactly as docs/http.md "Starting a device" promises:
 * configuration errors, migrations at start, a persisted DEVICE_ID, signals, and an unreachable NATS.
 */
const ROOT = join(__dirname, '..', '..');
const MAIN = join(ROOT, 'dist', 'main.js');
const STOP_DEADLINE_MS = 10_000;

/** Every variable of the contract; '' unsets it (DeviceProcess drops empty values), so the test's own environment cannot leak in. */
const UNSET = {
  DEVICE_ID: '',
  DEVICE_NAME: '',
  LIBRARY_ID: '',
  DATABASE_URL: '',
  DATA_DIR: '',
  NATS_URL: '',
  PORT: '',
  SYNC_ENABLED: '',
  SYNC_MAX_CLOCK_DRIFT_MS: '',
  HOST: '',
  API_TOKEN: '',
  API_ALLOWED_ORIGINS: '',
  LOG_FORMAT: '',
  LOG_LEVEL: '',
};

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.unref();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
  });
}

const started: DeviceProcess[] = [];

/** A device process with a valid configuration; `env` overrides or unsets ('') variables. */
function device(env: Record<string, string> = {}, dir = tempDataDir('process-')): DeviceProcess {
  const p = new DeviceProcess(
    {
      ...UNSET,
      LIBRARY_ID: randomUUID(),
      DEVICE_NAME: `proc-${randomUUID().slice(0, 6)}`,
      DATA_DIR: join(dir, 'data'),
      NATS_URL: natsUrl(),
      ...env,
    },
    dir,
  );
  started.push(p);
  return p;
}

/** Sends a signal and returns the exit code, failing if the process outlives the contract's deadline. */
async function stopWithin(
  p: DeviceProcess,
  signal: NodeJS.Signals,
): Promise<{ code: number | string | null; ms: number }> {
  const t0 = Date.now();
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () => reject(new Error(`still running ${STOP_DEADLINE_MS} ms after ${signal}: ${p.logTail()}`)),
      STOP_DEADLINE_MS,
    );
  });
  try {
    const code = await Promise.race([p.stop(signal), deadline]);
    return { code, ms: Date.now() - t0 };
  } finally {
    clearTimeout(timer);
  }
}

/** Runs dist/main.js that is expected to end by itself at start (bad configuration). */
function runUntilExit(env: Record<string, string>, timeoutMs = 30_000): Promise<Exit> {
  const merged: Record<string, string> = { ...(process.env as Record<string, string>), ...UNSET, ...env };
  // jest's own flags (--experimental-vm-modules) are not the device's, and would add warnings to stderr
  delete merged.NODE_OPTIONS;
  return runToExit(merged, timeoutMs);
}

/** Exit 1 and one line on stderr that names the variable. */
function expectConfigFailure(exit: Exit, variable: string): void {
  const lines = exit.stderr.trim().split('\n').filter(Boolean);
  expect({ code: exit.code, lines }).toEqual({ code: 1, lines: [expect.stringContaining(variable)] });
}

async function tablesOf(databaseUrl: string): Promise<string[]> {
  const c = new Client({ connectionString: databaseUrl });
  await c.connect();
  try {
    const r = await c.query<{ table_name: string }>(
      "select table_name from information_schema.tables where table_schema = 'public'",
    );
    return r.rows.map((row) => row.table_name);
  } finally {
    await c.end();
  }
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

beforeAll(() => {
  if (!existsSync(MAIN))
    throw new Error(`${MAIN} is missing: run \`npm run build\` first (npm test does it in pretest)`);
});

afterEach(() => {
  // a failed test must not leave a device running into the next one
  for (const p of started.splice(0)) if (p.proc && p.proc.exitCode === null) p.proc.kill('SIGKILL');
});

afterAll(async () => {
  await dropTestDatabases();
});

describe('device process: bad configuration ends it at start', () => {
  it.each<[string, string, Record<string, string>]>([
    ['LIBRARY_ID', 'not a uuid', { LIBRARY_ID: 'not-a-uuid' }],
    ['PORT', 'not a number', { PORT: 'eighty' }],
    ['SYNC_ENABLED', 'not a boolean', { SYNC_ENABLED: 'sometimes' }],
    ['DEVICE_ID', 'not a uuid', { DEVICE_ID: 'laptop' }],
    ['DATABASE_URL', 'not postgres', { DATABASE_URL: 'mysql://root@127.0.0.1/x' }],
  ])('%s %s: exit 1 with a one-line message naming it', async (variable, _why, env) => {
    const exit = await runUntilExit({
      LIBRARY_ID: randomUUID(),
      DATA_DIR: tempDataDir('process-'),
      NATS_URL: natsUrl(),
      ...env,
    });
    expectConfigFailure(exit, variable);
  });

  it('an unreachable DATABASE_URL: exit 1 naming DATABASE_URL', async () => {
    const exit = await runUntilExit({
      LIBRARY_ID: randomUUID(),
      DATABASE_URL: 'postgres://postgres@127.0.0.1:1/x',
      NATS_URL: natsUrl(),
    });
    expectConfigFailure(exit, 'DATABASE_URL');
  });
});

describe('device process on Postgres', () => {
  it('applies its migrations at start on an empty database, then serves', async () => {
    const databaseUrl = await createEmptyDatabase();
    expect(await tablesOf(databaseUrl)).toEqual([]);
    const p = device({ DATABASE_URL: databaseUrl });
    await p.start(await freePort());
    expect((await p.req('GET', '/health')).status).toBe(200);
    expect(await tablesOf(databaseUrl)).toEqual(
      expect.arrayContaining([
        'devices',
        'volumes',
        'locations',
        'entries',
        'tags',
        'albums',
        'shared_changes',
        'kysely_migration',
      ]),
    );
    expect((await stopWithin(p, 'SIGTERM')).code).toBe(0);
  });

  it.each<NodeJS.Signals>(['SIGTERM', 'SIGINT'])('%s stops it with exit 0 within 10 s', async (signal) => {
    const p = device({ DATABASE_URL: await createTestDatabase() });
    await p.start(await freePort());
    const { code } = await stopWithin(p, signal);
    expect(code).toBe(0);
  });

  it('generates DEVICE_ID once and keeps it across restarts; refuses another DEVICE_ID; another LIBRARY_ID is a second library', async () => {
    const databaseUrl = await createTestDatabase();
    const libraryId = randomUUID();
    const p = device({ DATABASE_URL: databaseUrl, LIBRARY_ID: libraryId });
    await p.start(await freePort());
    const first = (await p.req('GET', '/sync/status')).body.deviceId;
    expect(first).toMatch(UUID);
    expect((await stopWithin(p, 'SIGTERM')).code).toBe(0);

    await p.start(await freePort());
    expect((await p.req('GET', '/sync/status')).body.deviceId).toBe(first);
    expect((await stopWithin(p, 'SIGINT')).code).toBe(0);

    // the persisted id wins over nothing, and a different configured id is a mistake, not a new identity
    expectConfigFailure(
      await runUntilExit({
        DATABASE_URL: databaseUrl,
        LIBRARY_ID: libraryId,
        DEVICE_ID: randomUUID(),
        NATS_URL: natsUrl(),
      }),
      'DEVICE_ID',
    );
    // another LIBRARY_ID opens a second library beside the first, as the default one (API.md "Libraries")
    const second = randomUUID();
    const q = device({ DATABASE_URL: databaseUrl, LIBRARY_ID: second });
    await q.start(await freePort());
    const status = (await q.req('GET', '/sync/status')).body;
    expect([status.deviceId, status.libraryId]).toEqual([first, second]);
    const listed = (await q.req('GET', '/libraries')).body.items.map((l: { libraryId: string }) => l.libraryId);
    expect(listed.sort()).toEqual([libraryId, second].sort());
    expect((await stopWithin(q, 'SIGTERM')).code).toBe(0);
  });

  it('without LIBRARY_ID on a new database: serves /health and /libraries, and says it holds no library', async () => {
    const p = device({ DATABASE_URL: await createTestDatabase(), LIBRARY_ID: '' });
    await p.start(await freePort());
    expect((await p.req('GET', '/libraries')).body).toEqual({ items: [], nextCursor: null });
    const none = await p.req('GET', '/tags');
    expect(none.status).toBe(404);
    expect(none.body.message).toMatch(/holds no library/);
    const created = await p.req('POST', '/libraries', { name: 'first' });
    expect(created.status).toBe(201);
    expect(created.body).toMatchObject({ name: 'first', open: true, default: true });
    expect((await p.req('POST', '/tags', { name: 'now' })).status).toBe(201);
    expect((await stopWithin(p, 'SIGTERM')).code).toBe(0);
    // the library it created is open again after a restart, as the default
    await p.start(await freePort());
    expect((await p.req('GET', '/tags')).body.items.map((t: { name: string }) => t.name)).toEqual(['now']);
  });

  it('accepts its own DEVICE_ID when given explicitly', async () => {
    const deviceId = randomUUID();
    const p = device({ DATABASE_URL: await createTestDatabase(), DEVICE_ID: deviceId });
    await p.start(await freePort());
    expect((await p.req('GET', '/sync/status')).body.deviceId).toBe(deviceId);
    expect((await stopWithin(p, 'SIGTERM')).code).toBe(0);
  });

  it('keeps serving local reads and writes while NATS is unreachable', async () => {
    const p = device({ DATABASE_URL: await createTestDatabase(), NATS_URL: 'nats://127.0.0.1:1' });
    await p.start(await freePort());
    const health = await p.req('GET', '/health');
    expect(health.status).toBe(200);
    // NATS state is reported inside /health (docs/http.md) and must not claim a connection it cannot have
    expect(health.body.nats).not.toBe('connected');
    expect((await p.req('GET', '/sync/status')).status).toBe(200);
    const created = await p.req('POST', '/tags', { name: 'offline' });
    expect([200, 201]).toContain(created.status);
    expect((await p.req('PATCH', `/tags/${created.body.id}`, { color: '#00ff00' })).status).toBe(200);
    expect((await p.req('GET', `/tags/${created.body.id}`)).body).toMatchObject({
      id: created.body.id,
      name: 'offline',
      color: '#00ff00',
    });
    // reconnect attempts go on in the background and never end the process
    await waitFor('/health to keep answering', async () => (await p.req('GET', '/health')).status === 200, 5_000);
    expect(p.proc?.exitCode).toBeNull();
    expect((await stopWithin(p, 'SIGTERM')).code).toBe(0);
  });
});

describe('device process on embedded PGlite (DATA_DIR)', () => {
  it('migrates a new DATA_DIR, and keeps its DEVICE_ID and data across restarts', async () => {
    const dir = tempDataDir('process-pglite-');
    const p = device({ DATA_DIR: join(dir, 'data') }, dir);
    await p.start(await freePort());
    const first = (await p.req('GET', '/sync/status')).body.deviceId;
    expect(first).toMatch(UUID);
    const tag = await p.req('POST', '/tags', { name: 'kept', color: '#ff0000' });
    expect([200, 201]).toContain(tag.status);
    expect((await stopWithin(p, 'SIGTERM')).code).toBe(0);

    await p.start(await freePort());
    expect((await p.req('GET', '/sync/status')).body.deviceId).toBe(first);
    expect((await p.req('GET', `/tags/${tag.body.id}`)).body).toMatchObject({
      id: tag.body.id,
      name: 'kept',
      color: '#ff0000',
    });
    expect((await stopWithin(p, 'SIGINT')).code).toBe(0);
  });
});

/** An IPv4 address of this machine that is not loopback, if it has one. */
function externalIPv4(): string | undefined {
  return Object.values(networkInterfaces())
    .flat()
    .find((a) => a && a.family === 'IPv4' && !a.internal)?.address;
}

describe('device process: who may call the API', () => {
  const TOKEN = `process-token-${randomUUID()}`;

  it('listens on 127.0.0.1 only by default', async () => {
    const p = device({ DATABASE_URL: await createTestDatabase() });
    const port = await freePort();
    await p.start(port);
    expect((await p.req('GET', '/sync/status')).status).toBe(200);
    const ip = externalIPv4();
    if (ip) expect(await portOpen(ip, port, 1000)).toBe(false);
    else console.warn('no non-loopback IPv4 address on this machine: the interface check is skipped');
    expect(p.logTail(50)).toContain(`listening on http://127.0.0.1:${port}`);
    expect((await stopWithin(p, 'SIGTERM')).code).toBe(0);
  });

  it.each(['0.0.0.0', '::'])('HOST=%s without API_TOKEN: exit 1 naming API_TOKEN', async (host) => {
    const exit = await runUntilExit({
      LIBRARY_ID: randomUUID(),
      DATA_DIR: tempDataDir('process-'),
      NATS_URL: natsUrl(),
      HOST: host,
    });
    expectConfigFailure(exit, 'API_TOKEN');
  });

  it('a bad API_ALLOWED_ORIGINS: exit 1 naming it, and the token appears nowhere', async () => {
    const exit = await runUntilExit({
      LIBRARY_ID: randomUUID(),
      DATA_DIR: tempDataDir('process-'),
      NATS_URL: natsUrl(),
      HOST: '0.0.0.0',
      API_TOKEN: TOKEN,
      API_ALLOWED_ORIGINS: 'photos.example.com',
    });
    expectConfigFailure(exit, 'API_ALLOWED_ORIGINS');
    expect(exit.stdout + exit.stderr).not.toContain(TOKEN);
  });

  it('HOST=0.0.0.0 with API_TOKEN: serves every interface, 401 without the token, 200 with it; never logs it', async () => {
    const p = device({ DATABASE_URL: await createTestDatabase(), HOST: '0.0.0.0', API_TOKEN: TOKEN });
    const port = await freePort();
    await p.start(port); // waits on /health, which needs no token
    const bare = await http(p.url, 'GET', '/sync/status');
    expect(bare.status).toBe(401);
    expect(bare.body).toMatchObject({ statusCode: 401, error: 'Unauthorized' });
    expect((await p.req('GET', '/sync/status')).status).toBe(200);
    expect((await p.req('POST', '/tags', { name: 'with token' })).status).toBe(201);
    // a login and a wrong token: neither ends up in the log
    expect((await rawRequest(`${p.url}/?token=${TOKEN}`, 'GET', {})).status).toBe(303);
    expect(
      (await http(p.url, 'GET', '/sync/status', undefined, 5000, { authorization: `Bearer ${TOKEN}x` })).status,
    ).toBe(401);
    const ip = externalIPv4();
    if (ip) {
      const remote = `http://${ip}:${port}`;
      expect((await http(remote, 'GET', '/sync/status')).status).toBe(401);
      expect((await http(remote, 'GET', '/sync/status', undefined, 5000, p.headers)).status).toBe(200);
    }
    expect((await stopWithin(p, 'SIGTERM')).code).toBe(0);
    const log = readFileSync(p.logFile, 'utf8');
    expect(log).toContain('API_TOKEN required');
    expect(log).not.toContain(TOKEN);
  });
});

describe('device process: logs', () => {
  const TOKEN = `log-token-${randomUUID()}`;

  it('JSON lines when stdout is not a terminal: device and library ids on each, a request id per request, no secrets', async () => {
    const library = randomUUID();
    const p = device({ DATABASE_URL: await createTestDatabase(), LIBRARY_ID: library, API_TOKEN: TOKEN });
    await p.start(await freePort());
    // a request id given by the client is echoed and logged; one is made for the others
    const given = await fetch(`${p.url}/sync/status`, { headers: { ...p.headers, 'x-request-id': 'req-given-1' } });
    expect(given.status).toBe(200);
    expect(given.headers.get('x-request-id')).toBe('req-given-1');
    const made = await fetch(`${p.url}/tags`, {
      method: 'POST',
      headers: { ...p.headers, 'content-type': 'application/json' },
      body: JSON.stringify({ name: 'logged' }),
    });
    expect(made.status).toBe(201);
    const madeId = made.headers.get('x-request-id');
    expect(madeId).toMatch(/^[0-9a-f-]{36}$/);
    // the status page's login carries the token in its query string: never logged
    expect((await rawRequest(`${p.url}/?token=${TOKEN}`, 'GET', {})).status).toBe(303);
    expect((await stopWithin(p, 'SIGTERM')).code).toBe(0);

    const text = readFileSync(p.logFile, 'utf8');
    expect(text).not.toContain(TOKEN);
    const lines = text.split('\n').filter((l) => l.trim());
    expect(lines.length).toBeGreaterThan(5);
    const records = lines.map((l) => JSON.parse(l) as Record<string, unknown>);
    const deviceId = records[0].deviceId;
    expect(deviceId).toMatch(/^[0-9a-f-]{36}$/);
    for (const r of records) {
      expect(r).toMatchObject({ level: expect.any(String), message: expect.anything(), deviceId });
      expect(r).toHaveProperty('libraryId');
    }
    // the library's engine logs under its id; the device's start-up line under none
    expect(records.some((r) => r.libraryId === library && r.context !== 'HTTP')).toBe(true);
    const http = records.filter((r) => r.context === 'HTTP');
    expect(http.find((r) => r.requestId === 'req-given-1')).toMatchObject({
      message: expect.stringMatching(/^GET \/sync\/status 200 [\d.]+ ms$/),
      libraryId: library,
    });
    expect(http.find((r) => r.requestId === madeId)).toMatchObject({
      message: expect.stringMatching(/^POST \/tags 201 /),
      libraryId: library,
    });
    expect(http.some((r) => /^GET \/ 303 /.test(String(r.message)))).toBe(true);
  });

  it('LOG_FORMAT=text prints lines for a person with the ids; LOG_LEVEL=warn leaves out the routine ones', async () => {
    const library = randomUUID();
    const p = device({ DATABASE_URL: await createTestDatabase(), LIBRARY_ID: library, LOG_FORMAT: 'text' });
    await p.start(await freePort());
    expect((await p.req('GET', '/sync/status')).status).toBe(200);
    expect((await stopWithin(p, 'SIGTERM')).code).toBe(0);
    const text = readFileSync(p.logFile, 'utf8');
    expect(text).toContain('listening on');
    expect(text).toMatch(
      new RegExp(`device [0-9a-f-]{36} library ${library} request [0-9a-f-]{36} - .*GET /sync/status 200`),
    );
    expect(() => JSON.parse(text.split('\n')[0])).toThrow();

    const quiet = device({ DATABASE_URL: await createTestDatabase(), LIBRARY_ID: randomUUID(), LOG_LEVEL: 'warn' });
    await quiet.start(await freePort());
    expect((await quiet.req('GET', '/sync/status')).status).toBe(200);
    expect((await stopWithin(quiet, 'SIGTERM')).code).toBe(0);
    const routine = readFileSync(quiet.logFile, 'utf8');
    expect(routine).not.toContain('listening on');
    expect(routine).not.toContain('/sync/status');
  });
});
