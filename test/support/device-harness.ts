import { randomUUID } from 'node:crypto';
import type { LoggerService } from '@nestjs/common';
import { ChildProcess, spawn } from 'node:child_process';
import { openSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { startDevice, RunningDevice } from '../../src/device';
import type { DeviceConfig } from '../../src/config/config';
import type { InviteToken, NatsAuth } from '@lib/sync';
import { natsUrl, tempDataDir } from './databases';
import { portOpen } from './services';

export interface HttpResult<T = any> {
  status: number;
  body: T;
}

/** JSON over HTTP against a device (docs/http.md), with extra headers (Authorization, Origin, Cookie). */
export async function http<T = any>(
  base: string,
  method: string,
  path: string,
  body?: unknown,
  timeoutMs = 30000,
  headers: Record<string, string> = {},
): Promise<HttpResult<T>> {
  const res = await fetch(`${base}${path}`, {
    method,
    headers: body === undefined ? headers : { 'content-type': 'application/json', ...headers },
    body: body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body),
    signal: AbortSignal.timeout(timeoutMs),
  });
  const text = await res.text();
  let parsed: unknown = null;
  try {
    parsed = text ? JSON.parse(text) : null;
  } catch {
    parsed = { raw: text };
  }
  return { status: res.status, body: parsed as T };
}

/** `Authorization: Bearer <token>`, or nothing without a token. */
export const bearer = (token: string | null | undefined): Record<string, string> =>
  token ? { authorization: `Bearer ${token}` } : {};

/** Every item of a paged list. */
export async function listAll<T = any>(base: string, path: string, headers: Record<string, string> = {}): Promise<T[]> {
  const out: T[] = [];
  let cursor: string | null = null;
  for (;;) {
    const sep = path.includes('?') ? '&' : '?';
    const r: HttpResult = await http(
      base,
      'GET',
      `${path}${sep}limit=1000${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`,
      undefined,
      30000,
      headers,
    );
    if (r.status !== 200) throw new Error(`GET ${path} -> ${r.status} ${JSON.stringify(r.body)}`);
    out.push(...r.body.items);
    cursor = r.body.nextCursor;
    if (!cursor) return out;
  }
}

/** Generous deadline of the tests' waits: they should pass in seconds, but never flake on a slow CI. */
export const LONG = 60_000;

/** Polls until fn returns a truthy value (returned), or fails with the last value after the deadline. */
export async function waitFor<T>(what: string, fn: () => Promise<T> | T, timeoutMs = 30000, everyMs = 100): Promise<T> {
  const end = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      last = await fn();
      if (last) return last as T;
    } catch (e) {
      last = e;
    }
    if (Date.now() > end)
      throw new Error(
        `timed out after ${timeoutMs} ms waiting for ${what}; last: ${last instanceof Error ? last.message : JSON.stringify(last)?.slice(0, 500)}`,
      );
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

export interface TestDevice extends RunningDevice {
  url: string;
  config: DeviceConfig & { libraryId: string };
  req<T = any>(method: string, path: string, body?: unknown): Promise<HttpResult<T>>;
  list<T = any>(path: string): Promise<T[]>;
}

export interface TestDeviceOptions {
  name?: string;
  libraryId: string;
  /** LIBRARY_KEY (default none: the device founds the library, or its database holds the key). */
  libraryKey?: Buffer | null;
  /** LIBRARY_INVITE, decoded. */
  libraryInvite?: InviteToken | null;
  /** Postgres URL; null for embedded PGlite under dataDir. */
  databaseUrl: string | null;
  dataDir?: string;
  deviceId?: string | null;
  natsUrl?: string;
  /** Several NATS servers (a cluster); wins over natsUrl. */
  natsUrls?: string[];
  /** The device's NATS credentials (servers with authorization). */
  natsAuth?: NatsAuth | null;
  syncEnabled?: boolean;
  maxClockDriftMs?: number;
  heartbeatIntervalMs?: number;
  backfillPauseMs?: number;
  /** SYNC_STREAM_REPLICAS (default 1). */
  streamReplicas?: number;
  /** HOST (default 127.0.0.1), API_TOKEN (default none), API_ALLOWED_ORIGINS (default none). */
  host?: string;
  apiToken?: string | null;
  apiAllowedOrigins?: string[];
  /** Nest log levels (default warnings and errors). */
  logLevels?: ('log' | 'error' | 'warn' | 'debug' | 'verbose' | 'fatal')[];
  /** A logger of the test's own (to read what the device logs); wins over logLevels. */
  logger?: LoggerService;
}

/** A device as a Nest application inside the test process. */
export async function startTestDevice(o: TestDeviceOptions): Promise<TestDevice> {
  const name = o.name ?? `dev-${randomUUID().slice(0, 6)}`;
  const config: DeviceConfig = {
    deviceId: o.deviceId === undefined ? randomUUID() : o.deviceId,
    deviceName: name,
    libraryId: o.libraryId,
    libraryKey: o.libraryKey ?? null,
    libraryInvite: o.libraryInvite ?? null,
    databaseUrl: o.databaseUrl,
    dataDir: o.dataDir ?? tempDataDir(`${name}-`),
    natsServers: o.natsUrls ?? [o.natsUrl ?? natsUrl()],
    natsAuth: o.natsAuth ?? null,
    port: 0,
    host: o.host ?? '127.0.0.1',
    apiToken: o.apiToken ?? null,
    apiAllowedOrigins: o.apiAllowedOrigins ?? [],
    syncEnabled: o.syncEnabled ?? true,
    maxClockDriftMs: o.maxClockDriftMs ?? 5 * 60_000,
    heartbeatIntervalMs: o.heartbeatIntervalMs ?? 2000,
    backfillPauseMs: o.backfillPauseMs ?? 0,
    streamReplicas: o.streamReplicas ?? 1,
    logFormat: null,
    logLevel: 'log',
  };
  const device = await startDevice(config, o.logger ?? o.logLevels ?? ['error', 'warn']);
  const url = `http://127.0.0.1:${device.port}`;
  return Object.assign(device, {
    url,
    config: { ...config, libraryId: device.libraryId },
    req: <T = any>(method: string, path: string, body?: unknown) =>
      http<T>(url, method, path, body, 30000, bearer(config.apiToken)),
    list: <T = any>(path: string) => listAll<T>(url, path, bearer(config.apiToken)),
  });
}

const ROOT = join(__dirname, '..', '..');

/** A device as a real process (dist/main.js), for SIGKILL and signal tests. Needs `npm run build`. */
export class DeviceProcess {
  proc: ChildProcess | null = null;
  port = 0;
  readonly logFile: string;

  constructor(
    readonly env: Record<string, string>,
    readonly dir: string,
  ) {
    this.logFile = join(dir, `${env.DEVICE_NAME ?? 'device'}.log`);
  }

  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  async start(port: number, timeoutMs = 60000): Promise<void> {
    this.port = port;
    const log = openSync(this.logFile, 'a');
    // HOST and API_TOKEN of the test's own shell must not change how the device answers
    const env: Record<string, string> = {
      ...(process.env as Record<string, string>),
      HOST: '',
      API_TOKEN: '',
      API_ALLOWED_ORIGINS: '',
      ...this.env,
      PORT: String(port),
    };
    for (const k of Object.keys(env)) if (env[k] === '') delete env[k];
    this.proc = spawn(process.execPath, [join(ROOT, 'dist', 'main.js')], {
      cwd: ROOT,
      env,
      stdio: ['ignore', log, log],
    });
    await waitFor(
      `${this.env.DEVICE_NAME} to answer /health`,
      async () => {
        if (this.proc?.exitCode !== null) throw new Error(`exited with ${this.proc?.exitCode}: ${this.logTail()}`);
        if (!(await portOpen('127.0.0.1', port, 500))) return false;
        return (await http(this.url, 'GET', '/health', undefined, 2000)).status === 200;
      },
      timeoutMs,
      200,
    );
  }

  /** Sent with every request: the process's API_TOKEN. */
  get headers(): Record<string, string> {
    return bearer(this.env.API_TOKEN);
  }

  req<T = any>(method: string, path: string, body?: unknown): Promise<HttpResult<T>> {
    return http<T>(this.url, method, path, body, 30000, this.headers);
  }

  list<T = any>(path: string): Promise<T[]> {
    return listAll<T>(this.url, path, this.headers);
  }

  /** Sends a signal and resolves with the exit code (or signal name) once the process is gone. */
  async stop(signal: NodeJS.Signals = 'SIGTERM'): Promise<number | string | null> {
    const p = this.proc;
    if (!p || p.exitCode !== null || p.signalCode) return p?.exitCode ?? p?.signalCode ?? null;
    const done = new Promise<number | string | null>((r) => p.once('exit', (code, sig) => r(code ?? sig)));
    p.kill(signal);
    const result = await done;
    this.proc = null;
    return result;
  }

  logTail(lines = 20): string {
    try {
      return readFileSync(this.logFile, 'utf8').split('\n').slice(-lines).join('\n');
    } catch {
      return '(no log)';
    }
  }
}
