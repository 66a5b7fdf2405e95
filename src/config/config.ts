import { hostname } from 'node:os';
import { readFileSync, existsSync } from 'node:fs';
import { isIP } from 'node:net';
import { join } from 'node:path';
import { decodeInvite, type InviteToken, type NatsAuth } from '@lib/sync';
import type { LogLevel } from '@nestjs/common';
import { isLoopbackHost, normalizeOrigin } from '../library/http/api-access';
import { LOG_LEVELS, type LogFormat } from '../logging/device-logger';

/** Every setting of a device, parsed and validated once at start (docs/http.md "Starting a device"). */
export interface DeviceConfig {
  /** Unset means: use the id persisted in the database, or generate one there. */
  deviceId: string | null;
  deviceName: string;
  /** Unset: the invite's library, else the one the database holds. */
  libraryId: string | null;
  /** LIBRARY_KEY: the library's pre-shared key (32 bytes), read when the database is set up. */
  libraryKey: Buffer | null;
  /** LIBRARY_INVITE: join the library of this invite. */
  libraryInvite: InviteToken | null;
  /** Unset means: embedded PGlite under dataDir. */
  databaseUrl: string | null;
  dataDir: string;
  /** NATS_URL without credentials (safe to log). */
  natsServers: string[];
  /** NATS_CREDS, NATS_USER and NATS_PASSWORD, NATS_TOKEN, or user:password@ in NATS_URL; null: none. */
  natsAuth: NatsAuth | null;
  port: number;
  /** HOST: the address the HTTP API listens on (default 127.0.0.1: this machine only). */
  host: string;
  /** API_TOKEN: the secret every route but the health routes needs; required off loopback. */
  apiToken: string | null;
  /** API_ALLOWED_ORIGINS: browser origins allowed besides the device's own, normalized. */
  apiAllowedOrigins: string[];
  syncEnabled: boolean;
  maxClockDriftMs: number;
  /** Heartbeat period; a peer missing three is offline (SYNC_HEARTBEAT_INTERVAL_MS, default 2000). */
  heartbeatIntervalMs: number;
  /** Pause between backfill pages, to spare a busy serving peer (SYNC_BACKFILL_PAUSE_MS, default 0). */
  backfillPauseMs: number;
  /** Replicas of the library's JetStream stream (SYNC_STREAM_REPLICAS, default 1; 3 on a three-server cluster). */
  streamReplicas: number;
  /** LOG_FORMAT: json lines or text; null: json unless stdout is a terminal. */
  logFormat: LogFormat | null;
  /** LOG_LEVEL: the least severe level logged (default log). */
  logLevel: LogLevel;
}

export class ConfigError extends Error {
  constructor(
    readonly variable: string,
    detail: string,
  ) {
    super(`${variable}: ${detail}`);
    this.name = 'ConfigError';
  }
}

/** A DNS name to listen on (resolved by the system), when HOST is not an IP address. */
const HOST_NAME =
  /^(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$/;

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
export const isUuid = (s: string): boolean => UUID.test(s);

type Env = Record<string, string | undefined>;

/** Reads `KEY=value` lines of a .env file; real environment variables win over it. */
export function readDotEnv(path: string): Env {
  if (!existsSync(path)) return {};
  const out: Env = {};
  for (const line of readFileSync(path, 'utf8').split(/\r?\n/)) {
    const m = /^\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.*)\s*$/.exec(line);
    if (!m || line.trimStart().startsWith('#')) continue;
    out[m[1]] = m[2].replace(/^(['"])(.*)\1$/, '$2');
  }
  return out;
}

function parseBool(name: string, raw: string | undefined, dflt: boolean): boolean {
  if (raw === undefined || raw === '') return dflt;
  const v = raw.trim().toLowerCase();
  if (['true', '1', 'yes', 'on'].includes(v)) return true;
  if (['false', '0', 'no', 'off'].includes(v)) return false;
  throw new ConfigError(name, `expected true or false, got "${raw}"`);
}

function parseChoice<T extends string>(name: string, raw: string | undefined, choices: readonly T[], dflt: T): T {
  if (raw === undefined || raw === '') return dflt;
  const v = raw.trim().toLowerCase() as T;
  if (!choices.includes(v)) throw new ConfigError(name, `expected one of ${choices.join(', ')}, got "${raw}"`);
  return v;
}

function parseInteger(name: string, raw: string | undefined, dflt: number, min: number, max: number): number {
  if (raw === undefined || raw === '') return dflt;
  if (!/^\d+$/.test(raw.trim())) throw new ConfigError(name, `expected an integer, got "${raw}"`);
  const n = Number(raw.trim());
  if (n < min || n > max) throw new ConfigError(name, `expected ${min}..${max}, got ${n}`);
  return n;
}

export function parseConfig(processEnv: Env = process.env, cwd = process.cwd()): DeviceConfig {
  const env: Env = { ...readDotEnv(join(cwd, '.env')), ...processEnv };
  const get = (k: string): string | undefined => {
    const v = env[k];
    return v === undefined || v.trim() === '' ? undefined : v.trim();
  };

  const libraryId = get('LIBRARY_ID');
  if (libraryId !== undefined && !isUuid(libraryId)) throw new ConfigError('LIBRARY_ID', `not a uuid: "${libraryId}"`);

  const keyRaw = get('LIBRARY_KEY');
  let libraryKey: Buffer | null = null;
  if (keyRaw !== undefined) {
    libraryKey = /^[A-Za-z0-9+/_-]+={0,2}$/.test(keyRaw) ? Buffer.from(keyRaw, 'base64') : Buffer.alloc(0);
    if (libraryKey.length !== 32) throw new ConfigError('LIBRARY_KEY', 'expected base64 of 32 random bytes');
  }
  const inviteRaw = get('LIBRARY_INVITE');
  let libraryInvite: InviteToken | null = null;
  if (inviteRaw !== undefined) {
    libraryInvite = decodeInvite(inviteRaw);
    if (!libraryInvite) throw new ConfigError('LIBRARY_INVITE', 'not an invite token (from POST /sync/invites)');
    if (libraryKey) throw new ConfigError('LIBRARY_INVITE', 'give either LIBRARY_KEY or LIBRARY_INVITE, not both');
    if (libraryId && libraryId.toLowerCase() !== libraryInvite.libraryId)
      throw new ConfigError(
        'LIBRARY_INVITE',
        `the invite is for library ${libraryInvite.libraryId}, not LIBRARY_ID ${libraryId}`,
      );
  }

  const deviceId = get('DEVICE_ID') ?? null;
  if (deviceId !== null && !isUuid(deviceId)) throw new ConfigError('DEVICE_ID', `not a uuid: "${deviceId}"`);

  const deviceName = get('DEVICE_NAME') ?? hostname();
  if (deviceName.length > 200) throw new ConfigError('DEVICE_NAME', 'longer than 200 characters');

  const databaseUrl = get('DATABASE_URL') ?? null;
  if (databaseUrl !== null) {
    let url: URL;
    try {
      url = new URL(databaseUrl);
    } catch {
      throw new ConfigError('DATABASE_URL', 'not a URL (expected postgres://user@host:port/database)');
    }
    if (!['postgres:', 'postgresql:'].includes(url.protocol)) {
      throw new ConfigError('DATABASE_URL', `expected a postgres:// URL, got ${url.protocol}//`);
    }
  }

  const dataDir = get('DATA_DIR') ?? join('.', 'data', deviceName.replace(/[^A-Za-z0-9._-]/g, '_'));

  const { natsServers, natsAuth } = parseNats(get);

  // `[::1]` as in a URL, `::1` to listen on
  const host = (get('HOST') ?? '127.0.0.1').replace(/^\[(.*)\]$/, '$1');
  if (!isIP(host) && !HOST_NAME.test(host)) throw new ConfigError('HOST', `not an address to listen on: "${host}"`);
  // never echoed: a token in a message would end up in logs
  const apiToken = get('API_TOKEN') ?? null;
  if (apiToken === null && !isLoopbackHost(host))
    throw new ConfigError(
      'API_TOKEN',
      `required when HOST (${host}) is not a loopback address: set a long random secret (openssl rand -hex 32)`,
    );
  const apiAllowedOrigins = (get('API_ALLOWED_ORIGINS') ?? '')
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean)
    .map((o) => {
      // as copied from an address bar: `https://photos.example/` is that origin
      const origin = normalizeOrigin(o.replace(/\/$/, ''));
      if (origin === null) throw new ConfigError('API_ALLOWED_ORIGINS', `not an origin (scheme://host[:port]): "${o}"`);
      return origin;
    });

  return {
    deviceId: deviceId?.toLowerCase() ?? null,
    deviceName,
    libraryId: libraryId?.toLowerCase() ?? libraryInvite?.libraryId ?? null,
    libraryKey,
    libraryInvite,
    databaseUrl,
    dataDir,
    natsServers,
    natsAuth,
    port: parseInteger('PORT', get('PORT'), 3000, 0, 65535),
    host,
    apiToken,
    apiAllowedOrigins,
    syncEnabled: parseBool('SYNC_ENABLED', get('SYNC_ENABLED'), true),
    maxClockDriftMs: parseInteger(
      'SYNC_MAX_CLOCK_DRIFT_MS',
      get('SYNC_MAX_CLOCK_DRIFT_MS'),
      5 * 60_000,
      0,
      365 * 24 * 3600_000,
    ),
    backfillPauseMs: parseInteger('SYNC_BACKFILL_PAUSE_MS', get('SYNC_BACKFILL_PAUSE_MS'), 0, 0, 60_000),
    streamReplicas: parseInteger('SYNC_STREAM_REPLICAS', get('SYNC_STREAM_REPLICAS'), 1, 1, 5),
    logFormat: get('LOG_FORMAT')
      ? parseChoice<LogFormat>('LOG_FORMAT', get('LOG_FORMAT'), ['json', 'text'], 'json')
      : null,
    // 'info' is what most tools call Nest's 'log'
    logLevel: parseChoice<LogLevel>(
      'LOG_LEVEL',
      get('LOG_LEVEL')?.trim().toLowerCase() === 'info' ? 'log' : get('LOG_LEVEL'),
      LOG_LEVELS,
      'log',
    ),
    heartbeatIntervalMs: parseInteger(
      'SYNC_HEARTBEAT_INTERVAL_MS',
      get('SYNC_HEARTBEAT_INTERVAL_MS'),
      2000,
      100,
      600_000,
    ),
  };
}

/** NATS_URL's servers, stripped of credentials, and the one way of authenticating that is given. */
function parseNats(get: (k: string) => string | undefined): { natsServers: string[]; natsAuth: NatsAuth | null } {
  const natsRaw = get('NATS_URL') ?? 'nats://127.0.0.1:4222';
  const inUrl = new Set<string>();
  const natsServers: string[] = [];
  for (const s of natsRaw
    .split(',')
    .map((x) => x.trim())
    .filter(Boolean)) {
    let u: URL;
    try {
      u = new URL(s.includes('://') ? s : `nats://${s}`);
      if (!u.hostname) throw new Error('no host');
    } catch {
      // the message must not repeat a password the address may hold
      throw new ConfigError('NATS_URL', `not a server address: "${s.replace(/^([^@/]*\/\/)?[^@/]*@/, '$1***@')}"`);
    }
    if (u.username || u.password) {
      // nats://user:password@host, or nats://token@host
      inUrl.add(JSON.stringify([decodeURIComponent(u.username), decodeURIComponent(u.password)]));
      natsServers.push(s.replace(/^([^@/]*\/\/)?[^@/]*@/, '$1'));
    } else natsServers.push(s);
  }
  if (natsServers.length === 0) throw new ConfigError('NATS_URL', 'no server given');
  if (inUrl.size > 1) throw new ConfigError('NATS_URL', 'its servers name different credentials');

  const given: NatsAuth[] = [];
  const sources: string[] = [];
  const credsFile = get('NATS_CREDS');
  if (credsFile !== undefined) {
    try {
      readFileSync(credsFile);
    } catch (e) {
      throw new ConfigError('NATS_CREDS', `cannot read ${credsFile} (${(e as NodeJS.ErrnoException).code ?? 'error'})`);
    }
    given.push({ kind: 'creds', credsFile });
    sources.push('NATS_CREDS');
  }
  const user = get('NATS_USER');
  const pass = get('NATS_PASSWORD');
  if ((user === undefined) !== (pass === undefined))
    throw new ConfigError(
      user === undefined ? 'NATS_USER' : 'NATS_PASSWORD',
      'give NATS_USER and NATS_PASSWORD together',
    );
  if (user !== undefined && pass !== undefined) {
    given.push({ kind: 'password', user, pass });
    sources.push('NATS_USER');
  }
  const token = get('NATS_TOKEN');
  if (token !== undefined) {
    given.push({ kind: 'token', token });
    sources.push('NATS_TOKEN');
  }
  for (const entry of inUrl) {
    const [urlUser, urlPass] = JSON.parse(entry) as [string, string];
    given.push(urlPass ? { kind: 'password', user: urlUser, pass: urlPass } : { kind: 'token', token: urlUser });
    sources.push('NATS_URL');
  }
  if (given.length > 1)
    throw new ConfigError(
      sources[sources.length - 1],
      `${sources.join(' and ')} are given: use one way to authenticate to NATS: NATS_CREDS, NATS_USER and NATS_PASSWORD, NATS_TOKEN, or user:password@ in NATS_URL`,
    );
  return { natsServers, natsAuth: given[0] ?? null };
}
