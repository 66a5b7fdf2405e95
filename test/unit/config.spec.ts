import { mkdtempSync, writeFileSync } from 'node:fs';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { ConfigError, parseConfig } from '../../src/config/config';

/** docs/http.md "Starting a device": every variable, its default, and a bad value naming the variable. */
const LIBRARY = '6f1c2b1e-8d4a-4c3e-9b7f-2a5d0e9c4b11';
const DEVICE = '0b9d3c52-7f0e-4a51-9c1d-5e2f8a6b7c3d';

/** A directory without a .env file, unless the test writes one. */
const emptyDir = (): string => mkdtempSync(join(tmpdir(), 'config-spec-'));

function errorOf(env: Record<string, string>, cwd = emptyDir()): ConfigError {
  try {
    parseConfig(env, cwd);
  } catch (e) {
    expect(e).toBeInstanceOf(ConfigError);
    return e as ConfigError;
  }
  throw new Error(`parseConfig accepted ${JSON.stringify(env)}`);
}

describe('parseConfig', () => {
  // toMatchObject: the contract grows by addition, and a new setting must not break these
  it('applies the documented defaults when only LIBRARY_ID is given', () => {
    const c = parseConfig({ LIBRARY_ID: LIBRARY }, emptyDir());
    expect(c).toMatchObject({
      deviceId: null,
      deviceName: hostname(),
      libraryId: LIBRARY,
      databaseUrl: null,
      dataDir: join('.', 'data', hostname().replace(/[^A-Za-z0-9._-]/g, '_')),
      natsServers: ['nats://127.0.0.1:4222'],
      natsAuth: null,
      port: 3000,
      host: '127.0.0.1',
      apiToken: null,
      apiAllowedOrigins: [],
      syncEnabled: true,
      maxClockDriftMs: 5 * 60_000,
      heartbeatIntervalMs: 2000,
      backfillPauseMs: 0,
      streamReplicas: 1,
      logFormat: null,
      logLevel: 'log',
    });
  });

  it('reads every variable', () => {
    const c = parseConfig(
      {
        LIBRARY_ID: LIBRARY.toUpperCase(),
        DEVICE_ID: DEVICE,
        DEVICE_NAME: 'laptop',
        DATABASE_URL: 'postgres://postgres@db:5432/laptop',
        DATA_DIR: '/var/lib/device',
        NATS_URL: 'nats://n1:4222, nats://n2:4222 ,n3:4222',
        PORT: '3105',
        HOST: '0.0.0.0',
        API_TOKEN: ' s3cret-token ',
        API_ALLOWED_ORIGINS: 'https://Photos.Example.com, http://localhost:8080/',
        SYNC_ENABLED: 'false',
        SYNC_MAX_CLOCK_DRIFT_MS: '1000',
        SYNC_HEARTBEAT_INTERVAL_MS: '500',
        SYNC_BACKFILL_PAUSE_MS: '20',
        SYNC_STREAM_REPLICAS: '3',
        LOG_FORMAT: 'JSON',
        LOG_LEVEL: 'debug',
      },
      emptyDir(),
    );
    expect(c).toMatchObject({
      deviceId: DEVICE,
      deviceName: 'laptop',
      libraryId: LIBRARY,
      databaseUrl: 'postgres://postgres@db:5432/laptop',
      dataDir: '/var/lib/device',
      natsServers: ['nats://n1:4222', 'nats://n2:4222', 'n3:4222'],
      port: 3105,
      host: '0.0.0.0',
      apiToken: 's3cret-token',
      apiAllowedOrigins: ['https://photos.example.com', 'http://localhost:8080'],
      syncEnabled: false,
      maxClockDriftMs: 1000,
      heartbeatIntervalMs: 500,
      backfillPauseMs: 20,
      streamReplicas: 3,
      logFormat: 'json',
      logLevel: 'debug',
    });
  });

  it('puts embedded data under ./data/<DEVICE_NAME> by default', () => {
    expect(parseConfig({ LIBRARY_ID: LIBRARY, DEVICE_NAME: 'nas' }, emptyDir()).dataDir).toBe(join('.', 'data', 'nas'));
  });

  it('treats an empty variable as unset', () => {
    const c = parseConfig({ LIBRARY_ID: LIBRARY, PORT: '', DATABASE_URL: '', DEVICE_ID: ' ' }, emptyDir());
    expect(c.port).toBe(3000);
    expect(c.databaseUrl).toBeNull();
    expect(c.deviceId).toBeNull();
  });

  it.each([
    ['1', true],
    ['yes', true],
    ['TRUE', true],
    ['0', false],
    ['no', false],
    ['off', false],
  ])('reads SYNC_ENABLED=%s as %s', (raw, expected) => {
    expect(parseConfig({ LIBRARY_ID: LIBRARY, SYNC_ENABLED: raw }, emptyDir()).syncEnabled).toBe(expected);
  });

  it.each<[string, string, Record<string, string>]>([
    ['LIBRARY_KEY', 'not 32 bytes', { LIBRARY_ID: LIBRARY, LIBRARY_KEY: 'c2hvcnQ=' }],
    ['LIBRARY_INVITE', 'not a token', { LIBRARY_INVITE: 'not-a-token' }],
    ['LIBRARY_ID', 'not a uuid', { LIBRARY_ID: 'my-library' }],
    ['DEVICE_ID', 'not a uuid', { LIBRARY_ID: LIBRARY, DEVICE_ID: 'laptop' }],
    ['DEVICE_NAME', 'too long', { LIBRARY_ID: LIBRARY, DEVICE_NAME: 'x'.repeat(201) }],
    ['DATABASE_URL', 'not a URL', { LIBRARY_ID: LIBRARY, DATABASE_URL: 'not a url' }],
    ['DATABASE_URL', 'not postgres', { LIBRARY_ID: LIBRARY, DATABASE_URL: 'mysql://root@db/x' }],
    ['NATS_URL', 'empty list', { LIBRARY_ID: LIBRARY, NATS_URL: ' , ' }],
    ['NATS_URL', 'no host', { LIBRARY_ID: LIBRARY, NATS_URL: 'nats://' }],
    ['NATS_CREDS', 'unreadable file', { LIBRARY_ID: LIBRARY, NATS_CREDS: '/nonexistent/device.creds' }],
    ['NATS_PASSWORD', 'user without password', { LIBRARY_ID: LIBRARY, NATS_USER: 'device-a' }],
    ['NATS_USER', 'password without user', { LIBRARY_ID: LIBRARY, NATS_PASSWORD: 'secret' }],
    ['NATS_TOKEN', 'two methods', { LIBRARY_ID: LIBRARY, NATS_USER: 'a', NATS_PASSWORD: 'b', NATS_TOKEN: 't' }],
    ['NATS_URL', 'password in URL and variables', { LIBRARY_ID: LIBRARY, NATS_URL: 'nats://a:b@n1', NATS_TOKEN: 't' }],
    [
      'NATS_URL',
      'servers with different credentials',
      { LIBRARY_ID: LIBRARY, NATS_URL: 'nats://a:b@n1,nats://a:c@n2' },
    ],
    ['LOG_FORMAT', 'unknown format', { LIBRARY_ID: LIBRARY, LOG_FORMAT: 'xml' }],
    ['LOG_LEVEL', 'unknown level', { LIBRARY_ID: LIBRARY, LOG_LEVEL: 'chatty' }],
    ['SYNC_STREAM_REPLICAS', 'zero', { LIBRARY_ID: LIBRARY, SYNC_STREAM_REPLICAS: '0' }],
    ['SYNC_STREAM_REPLICAS', 'more than 5', { LIBRARY_ID: LIBRARY, SYNC_STREAM_REPLICAS: '7' }],
    ['PORT', 'not a number', { LIBRARY_ID: LIBRARY, PORT: 'http' }],
    ['PORT', 'negative', { LIBRARY_ID: LIBRARY, PORT: '-1' }],
    ['PORT', 'above 65535', { LIBRARY_ID: LIBRARY, PORT: '70000' }],
    ['SYNC_ENABLED', 'not a boolean', { LIBRARY_ID: LIBRARY, SYNC_ENABLED: 'maybe' }],
    ['SYNC_MAX_CLOCK_DRIFT_MS', 'not an integer', { LIBRARY_ID: LIBRARY, SYNC_MAX_CLOCK_DRIFT_MS: '5m' }],
    ['SYNC_HEARTBEAT_INTERVAL_MS', 'below 100', { LIBRARY_ID: LIBRARY, SYNC_HEARTBEAT_INTERVAL_MS: '10' }],
    ['SYNC_BACKFILL_PAUSE_MS', 'not an integer', { LIBRARY_ID: LIBRARY, SYNC_BACKFILL_PAUSE_MS: 'soon' }],
    ['API_TOKEN', 'missing off loopback', { LIBRARY_ID: LIBRARY, HOST: '0.0.0.0' }],
    ['API_TOKEN', 'blank off loopback', { LIBRARY_ID: LIBRARY, HOST: '192.168.1.20', API_TOKEN: '  ' }],
    ['API_TOKEN', 'missing on ::', { LIBRARY_ID: LIBRARY, HOST: '::' }],
    ['API_TOKEN', 'missing on a host name', { LIBRARY_ID: LIBRARY, HOST: 'nas.local' }],
    ['HOST', 'not an address', { LIBRARY_ID: LIBRARY, HOST: 'http://0.0.0.0' }],
    ['API_ALLOWED_ORIGINS', 'a path', { LIBRARY_ID: LIBRARY, API_ALLOWED_ORIGINS: 'https://a.example/app' }],
    ['API_ALLOWED_ORIGINS', 'no scheme', { LIBRARY_ID: LIBRARY, API_ALLOWED_ORIGINS: 'a.example' }],
    ['API_ALLOWED_ORIGINS', 'null', { LIBRARY_ID: LIBRARY, API_ALLOWED_ORIGINS: 'https://a.example,null' }],
  ])('rejects %s (%s) with a one-line message naming it', (variable, _why, env) => {
    const e = errorOf(env);
    expect(e.variable).toBe(variable);
    expect(e.message.startsWith(`${variable}:`)).toBe(true);
    expect(e.message).not.toContain('\n');
  });

  describe('NATS credentials', () => {
    it('reads NATS_USER and NATS_PASSWORD', () => {
      const c = parseConfig({ LIBRARY_ID: LIBRARY, NATS_USER: 'device-a', NATS_PASSWORD: 's3cret' }, emptyDir());
      expect(c.natsAuth).toEqual({ kind: 'password', user: 'device-a', pass: 's3cret' });
    });

    it('reads NATS_TOKEN', () => {
      expect(parseConfig({ LIBRARY_ID: LIBRARY, NATS_TOKEN: 'tok' }, emptyDir()).natsAuth).toEqual({
        kind: 'token',
        token: 'tok',
      });
    });

    it('reads NATS_CREDS when the file can be read', () => {
      const file = join(emptyDir(), 'device.creds');
      writeFileSync(file, '-----BEGIN NATS USER JWT-----\nx\n------END NATS USER JWT------\n');
      expect(parseConfig({ LIBRARY_ID: LIBRARY, NATS_CREDS: file }, emptyDir()).natsAuth).toEqual({
        kind: 'creds',
        credsFile: file,
      });
    });

    it('takes user:password@ out of NATS_URL, so the server list never holds it', () => {
      const c = parseConfig(
        { LIBRARY_ID: LIBRARY, NATS_URL: 'nats://device-a:p%40ss@n1:4222, device-a:p%40ss@n2:4222' },
        emptyDir(),
      );
      expect(c.natsServers).toEqual(['nats://n1:4222', 'n2:4222']);
      expect(c.natsAuth).toEqual({ kind: 'password', user: 'device-a', pass: 'p@ss' });
      expect(JSON.stringify(c.natsServers)).not.toContain('p%40ss');
    });

    it('reads a token in NATS_URL (nats://token@host)', () => {
      const c = parseConfig({ LIBRARY_ID: LIBRARY, NATS_URL: 'nats://tok@n1:4222' }, emptyDir());
      expect(c.natsServers).toEqual(['nats://n1:4222']);
      expect(c.natsAuth).toEqual({ kind: 'token', token: 'tok' });
    });

    it('never repeats a password in its messages', () => {
      const e = errorOf({ LIBRARY_ID: LIBRARY, NATS_URL: 'nats://a:hunter2@n1', NATS_TOKEN: 't' });
      expect(e.message).not.toContain('hunter2');
    });
  });

  it.each(['127.0.0.1', '127.3.4.5', 'localhost', '::1', '[::1]'])(
    'HOST=%s is loopback: no API_TOKEN needed',
    (host) => {
      expect(parseConfig({ LIBRARY_ID: LIBRARY, HOST: host }, emptyDir())).toMatchObject({
        host: host.replace(/[[\]]/g, ''),
        apiToken: null,
      });
    },
  );

  it('never puts API_TOKEN into its messages', () => {
    const e = errorOf({ LIBRARY_ID: LIBRARY, HOST: '0.0.0.0', API_TOKEN: 'tok', API_ALLOWED_ORIGINS: 'nope' });
    expect(e.variable).toBe('API_ALLOWED_ORIGINS');
    expect(e.message).not.toContain('tok');
  });

  describe('.env file', () => {
    it('supplies variables from .env in the working directory', () => {
      const dir = emptyDir();
      writeFileSync(
        join(dir, '.env'),
        [
          '# a comment',
          `LIBRARY_ID=${LIBRARY}`,
          'export DEVICE_NAME="desk top"',
          "PORT='3200'",
          '',
          'SYNC_ENABLED = false',
        ].join('\n'),
      );
      const c = parseConfig({}, dir);
      expect(c.libraryId).toBe(LIBRARY);
      expect(c.deviceName).toBe('desk top');
      expect(c.port).toBe(3200);
      expect(c.syncEnabled).toBe(false);
    });

    it('lets the real environment win over .env', () => {
      const dir = emptyDir();
      writeFileSync(join(dir, '.env'), `LIBRARY_ID=${LIBRARY}\nPORT=3200\nDEVICE_NAME=from-file\n`);
      const c = parseConfig({ PORT: '3300', DEVICE_NAME: 'from-env' }, dir);
      expect(c.port).toBe(3300);
      expect(c.deviceName).toBe('from-env');
      expect(c.libraryId).toBe(LIBRARY);
    });

    it('names the variable when the .env value is bad', () => {
      const dir = emptyDir();
      writeFileSync(join(dir, '.env'), `LIBRARY_ID=${LIBRARY}\nPORT=eighty\n`);
      expect(errorOf({}, dir).variable).toBe('PORT');
    });

    it('is optional', () => {
      expect(() => parseConfig({ LIBRARY_ID: LIBRARY }, emptyDir())).not.toThrow();
    });
  });
});
