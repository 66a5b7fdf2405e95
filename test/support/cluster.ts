import { randomBytes, randomUUID } from 'node:crypto';
import { existsSync, readdirSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { waitPhase } from './api';
import { createTestDatabase, dropTestDatabases, tempDataDir } from './databases';
import { DeviceProcess, startTestDevice, TestDevice, TestDeviceOptions } from './device-harness';
import { freePort, NatsServerProcess } from './nats-server';
import { Broker } from './wire';

/**
 * One test's cluster: its own nats-server, a library id, and devices each with its own Postgres
 * database, in-process (closed and started again on the same database and id) or as real
 * processes (dist/main.js, for SIGKILL and SIGSTOP). `dispose()` stops and drops everything.
 */

export interface ClusterOptions {
  libraryId?: string;
  /** The library's pre-shared key (LIBRARY_KEY) its devices start with (default: a random one). */
  libraryKey?: Buffer;
  /** Extra nats-server configuration, e.g. `max_payload: 32768`. */
  natsSettings?: string;
  /** Heartbeat period of its devices and processes that set none (default: the device's, 2 s). */
  heartbeatIntervalMs?: number;
}

export interface ClusterDeviceOptions extends Partial<Omit<TestDeviceOptions, 'libraryId'>> {
  /** Another library than the cluster's (a stream of its own). */
  libraryId?: string;
  /** Wait for phase ready (default true; never when sync is off). */
  wait?: boolean;
}

/** A device process of the cluster, with the database and id it was given. */
export type ClusterProcess = DeviceProcess & { databaseUrl: string; deviceId: string };

export class Cluster {
  readonly libraryId: string;
  readonly nats: NatsServerProcess;
  /** The pre-shared key of each library this cluster's devices use (LIBRARY_KEY). */
  private readonly keys = new Map<string, Buffer>();
  private readonly running = new Set<TestDevice>();
  private readonly processes: DeviceProcess[] = [];
  private readonly extra: (() => Promise<void>)[] = [];

  constructor(private readonly options: ClusterOptions = {}) {
    this.libraryId = options.libraryId ?? randomUUID();
    this.keys.set(this.libraryId, options.libraryKey ?? randomBytes(32));
    this.nats = new NatsServerProcess(options.natsSettings);
  }

  /** The pre-shared key of a library of this cluster (made on first use). */
  libraryKey(libraryId = this.libraryId): Buffer {
    let k = this.keys.get(libraryId);
    if (!k) this.keys.set(libraryId, (k = randomBytes(32)));
    return k;
  }

  async start(): Promise<this> {
    await this.nats.start();
    return this;
  }

  get natsUrl(): string {
    return this.nats.url;
  }

  /** A raw NATS client on the cluster's library that can speak as a member (it holds the key), closed with the cluster. */
  async broker(): Promise<Broker> {
    const b = await Broker.connect(this.natsUrl, this.libraryId, (library) => this.libraryKey(library));
    this.onDispose(() => b.close());
    return b;
  }

  /** A new in-process device with a fresh database (or the given one), ready unless told not to wait. */
  async device(name: string, o: ClusterDeviceOptions = {}): Promise<TestDevice> {
    const { wait, ...options } = o;
    const databaseUrl = o.databaseUrl === undefined ? await createTestDatabase(`dev_${name}`) : o.databaseUrl;
    const d = await startTestDevice({
      heartbeatIntervalMs: this.options.heartbeatIntervalMs,
      logLevels: deviceLogLevels(),
      ...options,
      name,
      libraryId: o.libraryId ?? this.libraryId,
      libraryKey: o.libraryKey === undefined ? this.libraryKey(o.libraryId ?? this.libraryId) : o.libraryKey,
      databaseUrl,
      natsUrl: o.natsUrl ?? this.natsUrl,
    });
    this.running.add(d);
    if (wait !== false && o.syncEnabled !== false) await waitPhase(d);
    return d;
  }

  /** Several new devices, started side by side. */
  async startDevices(names: string[], o: ClusterDeviceOptions = {}): Promise<TestDevice[]> {
    return Promise.all(names.map((n) => this.device(n, o)));
  }

  async close(d: TestDevice): Promise<void> {
    this.running.delete(d);
    await d.close();
  }

  /** Starts a device again (closing it first if need be) on its database and id, with its settings. */
  async restart(d: TestDevice, o: ClusterDeviceOptions = {}): Promise<TestDevice> {
    await this.close(d);
    return this.device(d.config.deviceName, {
      libraryId: d.config.libraryId,
      syncEnabled: d.config.syncEnabled,
      maxClockDriftMs: d.config.maxClockDriftMs,
      heartbeatIntervalMs: d.config.heartbeatIntervalMs,
      backfillPauseMs: d.config.backfillPauseMs,
      natsAuth: d.config.natsAuth,
      natsUrls: d.config.natsServers.length > 1 ? d.config.natsServers : undefined,
      streamReplicas: d.config.streamReplicas,
      ...o,
      databaseUrl: d.config.databaseUrl,
      dataDir: d.config.dataDir,
      deviceId: d.deviceId,
    });
  }

  /**
   * A real device process (dist/main.js) of this library with its own database (or env's
   * DATABASE_URL) and id (or env's DEVICE_ID); not started. Variables set to '' are unset, so the
   * test's own environment cannot leak in.
   */
  async process(name: string, env: Record<string, string> = {}): Promise<ClusterProcess> {
    checkBuild();
    const dir = tempDataDir(`proc-${name}-`);
    const databaseUrl = env.DATABASE_URL ?? (await createTestDatabase(`dev_${name}`));
    const deviceId = env.DEVICE_ID ?? randomUUID();
    const heartbeat = this.options.heartbeatIntervalMs;
    const p = new DeviceProcess(
      {
        DEVICE_ID: deviceId,
        DEVICE_NAME: name,
        LIBRARY_ID: this.libraryId,
        LIBRARY_KEY: this.libraryKey().toString('base64'),
        DATABASE_URL: databaseUrl,
        DATA_DIR: join(dir, 'data'),
        NATS_URL: this.natsUrl,
        PORT: '',
        SYNC_ENABLED: '',
        SYNC_MAX_CLOCK_DRIFT_MS: '',
        SYNC_HEARTBEAT_INTERVAL_MS: heartbeat === undefined ? '' : String(heartbeat),
        SYNC_BACKFILL_PAUSE_MS: '',
        ...env,
      },
      dir,
    );
    this.processes.push(p);
    return Object.assign(p, { databaseUrl, deviceId });
  }

  /** Something else to release at the end (raw NATS connections, database handles). */
  onDispose(fn: () => Promise<void>): void {
    this.extra.push(fn);
  }

  async dispose(): Promise<void> {
    for (const p of this.processes) {
      await p.stop('SIGKILL').catch(() => undefined);
      rmSync(p.dir, { recursive: true, force: true });
    }
    for (const d of this.running) await d.close().catch(() => undefined);
    this.running.clear();
    for (const fn of this.extra) await fn().catch(() => undefined);
    await this.nats.dispose().catch(() => undefined);
    await dropTestDatabases().catch(() => undefined);
  }
}

/**
 * For a describe block: a new Cluster per call, each disposed (devices, processes and broker)
 * after its test, so nothing keeps running into the next test.
 */
export function clusterPerTest(options: ClusterOptions = {}): () => Promise<Cluster> {
  const clusters: Cluster[] = [];
  afterEach(async () => {
    for (const c of clusters.splice(0)) await c.dispose();
  });
  afterAll(() => dropTestDatabases());
  return async () => {
    const c = new Cluster(options);
    clusters.push(c);
    return c.start();
  };
}

/** Starts a device process on a free port (or the given one) and waits until it is ready. */
export async function startProcess(p: DeviceProcess, port?: number): Promise<void> {
  await p.start(port ?? (p.port || (await freePort())));
  await waitPhase(p);
}

/** Nest log levels of in-process devices: warnings and errors, and more with DEVICE_LOGS=1. */
function deviceLogLevels(): TestDeviceOptions['logLevels'] {
  return process.env.DEVICE_LOGS || process.env.LIFECYCLE_LOGS ? ['log', 'warn', 'error'] : undefined;
}

const ROOT = join(__dirname, '..', '..');

function newestMtime(dir: string): number {
  let newest = 0;
  for (const name of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, name.name);
    if (name.isDirectory()) newest = Math.max(newest, newestMtime(p));
    else if (name.name.endsWith('.ts')) newest = Math.max(newest, statSync(p).mtimeMs);
  }
  return newest;
}

/** Process tests run dist/main.js: fail when it is missing, say so when it is older than the sources. */
function checkBuild(): void {
  const main = join(ROOT, 'dist', 'main.js');
  if (!existsSync(main)) throw new Error('dist/main.js is missing: run `npm run build` before the process tests');
  const built = statSync(main).mtimeMs;
  const src = Math.max(newestMtime(join(ROOT, 'src')), newestMtime(join(ROOT, 'libs')));
  if (src > built)
    console.warn('dist/ is older than src/ or libs/: the process tests run the previous build (run `npm run build`)');
}
