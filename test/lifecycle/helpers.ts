import { randomUUID } from 'node:crypto';
import { existsSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { Client } from 'pg';
import { sql } from 'kysely';
import { AckPolicy, connect, DeliverPolicy, JetStreamManager, NatsConnection } from 'nats';
import { ENTRIES, LibrarySubjects, LOCATIONS, OwnedWriter } from '@lib/sync';
import { createTestDatabase, dropTestDatabases, tempDataDir } from '../support/databases';
import {
  DeviceProcess,
  HttpResult,
  startTestDevice,
  TestDevice,
  TestDeviceOptions,
  waitFor,
} from '../support/device-harness';
import { freePort, NatsServerProcess } from '../support/nats-server';

/**
 * Helpers of the peer-lifecycle tests (issue 4): a test's own world (nats-server, library id,
 * devices with their own Postgres databases), convergence checks through the public API, and a
 * raw NATS client to break the broker's state behind the devices' backs.
 */

/** Deadline of every wait: the tests should pass in seconds, but never flake on a slow CI. */
export const LONG = 60_000;

/** What a test needs of a device: in-process (TestDevice) or a real process (DeviceProcess). */
export interface Api {
  readonly url: string;
  req<T = any>(method: string, path: string, body?: unknown): Promise<HttpResult<T>>;
}

export type Digest = Record<string, { count: number; hash: string }>;

export interface PeerStatus {
  deviceId: string;
  deviceName: string;
  online: boolean;
  lastSeenAt: string | null;
  stateWatermark: string | null;
  sharedWatermark: string | null;
  pendingToPeer: number;
}

export interface BackfillItem {
  owner: string;
  model: string;
  done: number;
  total: number | null;
  startedAfter?: string | null;
}

export interface Status {
  deviceId: string;
  deviceName: string;
  phase: string;
  peers: PeerStatus[];
  natsConnected?: boolean;
  backfill?: { source: string | null; items: BackfillItem[] } | null;
}

/** The request must succeed (2xx); returns the body. */
export async function must<T = any>(p: Api, method: string, path: string, body?: unknown): Promise<T> {
  const r = await p.req<T>(method, path, body);
  if (r.status < 200 || r.status >= 300)
    throw new Error(`${method} ${p.url}${path} -> ${r.status} ${JSON.stringify(r.body).slice(0, 300)}`);
  return r.body;
}

export const statusOf = (p: Api): Promise<Status> => must<Status>(p, 'GET', '/sync/status');
export const digestOf = async (p: Api): Promise<Digest> =>
  (await must<{ models: Digest }>(p, 'GET', '/sync/digest')).models;

export function peerIn(s: Status, id: string): PeerStatus | undefined {
  return s.peers.find((p) => p.deviceId === id);
}

export async function waitPhase(p: Api, phase = 'ready', timeoutMs = LONG): Promise<Status> {
  return waitFor(
    `${p.url} to reach phase ${phase}`,
    async () => {
      const s = await statusOf(p);
      if (s.phase !== phase) throw new Error(`phase ${s.phase}`);
      return s;
    },
    timeoutMs,
    100,
  );
}

/**
 * Waits until every device reports the same digest and, when given, these live counts per model.
 * Polls gently: a digest reads every row, and in-process devices share the test's event loop.
 */
export async function waitConverged(
  peers: Api[],
  counts: Record<string, number> = {},
  timeoutMs = LONG,
  everyMs = 250,
): Promise<Digest> {
  return waitFor(
    `${peers.length} devices to converge${Object.keys(counts).length ? ` on ${JSON.stringify(counts)}` : ''}`,
    async () => {
      const digests = await Promise.all(peers.map(digestOf));
      const brief = () =>
        JSON.stringify(
          digests.map((d) =>
            Object.fromEntries(Object.entries(d).map(([m, v]) => [m, `${v.count}:${v.hash.slice(0, 8)}`])),
          ),
        );
      const text = digests.map((d) => JSON.stringify(d));
      if (!text.every((t) => t === text[0])) throw new Error(`digests differ: ${brief()}`);
      for (const [model, n] of Object.entries(counts)) {
        if (digests[0][model]?.count !== n)
          throw new Error(`${model}: ${digests[0][model]?.count} records, expecting ${n}: ${brief()}`);
      }
      return digests[0];
    },
    timeoutMs,
    everyMs,
  );
}

/** Rows of a table in a device's database (a cheap progress check before comparing digests). */
export async function countRows(d: TestDevice | { databaseUrl: string }, table: string): Promise<number> {
  if ('db' in d) {
    const r = await sql<{ n: number }>`select count(*)::int as n from ${sql.table(table)}`.execute(d.db);
    return Number(r.rows[0].n);
  }
  return Number((await queryDb(d.databaseUrl, `select count(*)::int as n from ${table}`))[0].n);
}

/** Waits until every device holds n rows of table. */
export async function waitRows(
  devices: (TestDevice | { databaseUrl: string })[],
  table: string,
  n: number,
  timeoutMs = LONG,
): Promise<void> {
  await waitFor(
    `${devices.length} devices to hold ${n} ${table}`,
    async () => {
      const counts = await Promise.all(devices.map((d) => countRows(d, table)));
      if (counts.some((c) => c !== n)) throw new Error(`${table}: ${counts.join(', ')}`);
      return true;
    },
    timeoutMs,
    200,
  );
}

// ---------------------------------------------------------------------------------------------
// Writes through the public API (docs/http.md)

export async function createLocation(p: Api, name = `loc-${randomUUID().slice(0, 8)}`): Promise<string> {
  const id = randomUUID();
  await must(p, 'POST', '/locations', { id, name, path: `/${name}` });
  return id;
}

/** Writes n entries into location (batches of up to 5000); returns their ids. */
export async function writeEntries(p: Api, locationId: string, n: number, prefix = 'f'): Promise<string[]> {
  const ids: string[] = [];
  for (let start = 0; start < n; start += 5000) {
    const items = Array.from({ length: Math.min(5000, n - start) }, (_, k) => {
      const i = start + k;
      const id = randomUUID();
      ids.push(id);
      return {
        id,
        locationId,
        name: `${prefix}${i}.txt`,
        path: `/${prefix}/${prefix}${i}.txt`,
        kind: 'file',
        sizeBytes: i,
        modifiedAt: '2024-01-02T03:04:05.000Z',
      };
    });
    await must(p, 'POST', '/entries/batch', { items });
  }
  return ids;
}

export async function createTag(p: Api, name: string, color: string | null = null): Promise<string> {
  const id = randomUUID();
  await must(p, 'POST', '/tags', { id, name, color });
  return id;
}

/** n entries written through the owner's write path in one transaction (bulk setup). */
export async function seedEntries(
  d: TestDevice,
  n: number,
  prefix = 'f',
): Promise<{ locationId: string; ids: string[] }> {
  const locationId = randomUUID();
  const ids = Array.from({ length: n }, () => randomUUID());
  await d.app.get(OwnedWriter).transact(async (w) => {
    await w.upsert(LOCATIONS, [{ id: locationId, volume_id: null, name: `${prefix}-loc`, path: `/${prefix}` }]);
    await w.upsert(
      ENTRIES,
      ids.map((id, i) => ({
        id,
        location_id: locationId,
        name: `${prefix}${i}.txt`,
        path: `/${prefix}/${prefix}${i}.txt`,
        kind: 'file',
        size_bytes: i,
        modified_at: '2024-01-02T03:04:05.000Z',
      })),
    );
  });
  return { locationId, ids };
}

// ---------------------------------------------------------------------------------------------
// Direct database access (a process's database, or an in-process device's)

export async function queryDb<T = any>(databaseUrl: string, text: string, params: unknown[] = []): Promise<T[]> {
  const c = new Client({ connectionString: databaseUrl });
  await c.connect();
  try {
    return (await c.query(text, params)).rows as T[];
  } finally {
    await c.end();
  }
}

// ---------------------------------------------------------------------------------------------
// The broker, from outside

export function subjectsOf(libraryId: string): LibrarySubjects {
  return new LibrarySubjects(libraryId);
}

/** A raw NATS client of the test (not a device): deletes and inspects streams and consumers. */
export class Broker {
  private constructor(
    readonly nc: NatsConnection,
    readonly subjects: LibrarySubjects,
  ) {}

  static async connect(natsUrl: string, libraryId: string): Promise<Broker> {
    return new Broker(
      await connect({ servers: natsUrl, name: 'lifecycle-test', maxReconnectAttempts: -1, reconnectTimeWait: 200 }),
      subjectsOf(libraryId),
    );
  }

  /** Short API timeouts: a request caught by a broker restart is lost, and polls simply retry. */
  jsm(): Promise<JetStreamManager> {
    return this.nc.jetstreamManager({ timeout: 2000 });
  }

  async consumerExists(deviceId: string): Promise<boolean> {
    const jsm = await this.jsm();
    try {
      await jsm.consumers.info(this.subjects.stream, this.subjects.durable(deviceId));
      return true;
    } catch {
      return false;
    }
  }

  /** Waits until JetStream answers this client (after a broker restart). */
  async waitReachable(timeoutMs = LONG): Promise<void> {
    await waitFor('JetStream to answer', async () => !!(await (await this.jsm()).getAccountInfo()), timeoutMs, 100);
  }

  async streamExists(): Promise<boolean> {
    const jsm = await this.jsm();
    try {
      await jsm.streams.info(this.subjects.stream);
      return true;
    } catch {
      return false;
    }
  }

  /** Messages waiting in the device's durable consumer (not yet delivered, or not yet acked). */
  async pending(deviceId: string): Promise<number> {
    const jsm = await this.jsm();
    const info = await jsm.consumers.info(this.subjects.stream, this.subjects.durable(deviceId));
    return info.num_pending + info.num_ack_pending;
  }

  /** The filter subject of the device's durable consumer (null: no such consumer). */
  async consumerFilter(deviceId: string): Promise<string | null> {
    const jsm = await this.jsm();
    try {
      return (
        (await jsm.consumers.info(this.subjects.stream, this.subjects.durable(deviceId))).config.filter_subject ?? null
      );
    } catch {
      return null;
    }
  }

  /**
   * Deletes the device's durable consumer and puts a stand-in of the same name in its place that
   * delivers nothing: the device fetches from it without noticing anything, so whatever is
   * published meanwhile never reaches its queue (deterministically, unlike a bare delete that the
   * device may repair within milliseconds). Deleting the stand-in then looks to the device like
   * the loss of its consumer.
   */
  async replaceConsumerWithStandIn(deviceId: string, timeoutMs = LONG): Promise<void> {
    const jsm = await this.jsm();
    const standIn = `sync.${this.subjects.libraryId}.log.stand-in`;
    await waitFor(
      `a stand-in consumer for ${deviceId}`,
      async () => {
        if ((await this.consumerFilter(deviceId)) === standIn) return true;
        await jsm.consumers.delete(this.subjects.stream, this.subjects.durable(deviceId)).catch(() => false);
        await jsm.consumers
          .add(this.subjects.stream, {
            durable_name: this.subjects.durable(deviceId),
            ack_policy: AckPolicy.Explicit,
            deliver_policy: DeliverPolicy.New,
            filter_subject: standIn,
          })
          .catch(() => undefined); // the device recreated its own first: try again
        return (await this.consumerFilter(deviceId)) === standIn;
      },
      timeoutMs,
      10,
    );
  }

  /** The stream's last sequence number (0 when empty). */
  async lastSeq(): Promise<number> {
    const jsm = await this.jsm();
    return (await jsm.streams.info(this.subjects.stream)).state.last_seq;
  }

  async deleteConsumer(deviceId: string): Promise<boolean> {
    const jsm = await this.jsm();
    return jsm.consumers.delete(this.subjects.stream, this.subjects.durable(deviceId));
  }

  async waitConsumer(deviceId: string, timeoutMs = LONG): Promise<void> {
    await waitFor(`durable consumer of ${deviceId}`, () => this.consumerExists(deviceId), timeoutMs, 100);
  }

  async close(): Promise<void> {
    await this.nc.close().catch(() => undefined);
  }
}

// ---------------------------------------------------------------------------------------------
// A test's world

export interface WorldDeviceOptions extends Partial<Omit<TestDeviceOptions, 'libraryId'>> {
  /** Wait for phase ready (default true). */
  wait?: boolean;
}

/**
 * One test's own nats-server, library id and devices (each with its own Postgres database).
 * In-process devices can be closed and started again on the same database and id.
 */
export class World {
  readonly libraryId = randomUUID();
  readonly nats = new NatsServerProcess();
  private readonly running = new Set<TestDevice>();
  private readonly processes: DeviceProcess[] = [];
  private brokers: Broker[] = [];

  async start(): Promise<this> {
    await this.nats.start();
    return this;
  }

  get natsUrl(): string {
    return this.nats.url;
  }

  async broker(): Promise<Broker> {
    const b = await Broker.connect(this.natsUrl, this.libraryId);
    this.brokers.push(b);
    return b;
  }

  /** A new in-process device with a fresh database (or the given one). */
  async device(name: string, o: WorldDeviceOptions = {}): Promise<TestDevice> {
    const databaseUrl = o.databaseUrl === undefined ? await createTestDatabase(`lc_${name}`) : o.databaseUrl;
    const logLevels = process.env.LIFECYCLE_LOGS ? (['log', 'warn', 'error'] as const) : undefined;
    const d = await startTestDevice({
      heartbeatIntervalMs: 500,
      logLevels: logLevels && [...logLevels],
      ...o,
      name,
      libraryId: this.libraryId,
      databaseUrl,
      natsUrl: o.natsUrl ?? this.natsUrl,
    });
    this.running.add(d);
    if (o.wait !== false && o.syncEnabled !== false) await waitPhase(d);
    return d;
  }

  async close(d: TestDevice): Promise<void> {
    this.running.delete(d);
    await d.close();
  }

  /** Starts a (closed) device again on its database and id. */
  async restart(d: TestDevice, o: WorldDeviceOptions = {}): Promise<TestDevice> {
    if (this.running.has(d)) await this.close(d);
    return this.device(d.config.deviceName, {
      heartbeatIntervalMs: d.config.heartbeatIntervalMs,
      backfillPauseMs: d.config.backfillPauseMs,
      ...o,
      databaseUrl: d.config.databaseUrl,
      dataDir: d.config.dataDir,
      deviceId: d.deviceId,
    });
  }

  /** A real device process (dist/main.js) of this library with its own database; not started. */
  async process(
    name: string,
    env: Record<string, string> = {},
  ): Promise<DeviceProcess & { databaseUrl: string; deviceId: string }> {
    warnIfStaleBuild();
    const dir = tempDataDir(`lc-${name}-`);
    const databaseUrl = env.DATABASE_URL ?? (await createTestDatabase(`lc_${name}`));
    const deviceId = env.DEVICE_ID ?? randomUUID();
    const p = new DeviceProcess(
      {
        DEVICE_ID: deviceId,
        DEVICE_NAME: name,
        LIBRARY_ID: this.libraryId,
        DATABASE_URL: databaseUrl,
        DATA_DIR: join(dir, 'data'),
        NATS_URL: this.natsUrl,
        SYNC_ENABLED: '',
        SYNC_MAX_CLOCK_DRIFT_MS: '',
        SYNC_HEARTBEAT_INTERVAL_MS: '500',
        SYNC_BACKFILL_PAUSE_MS: '0',
        ...env,
      },
      dir,
    );
    this.processes.push(p);
    return Object.assign(p, { databaseUrl, deviceId });
  }

  async dispose(): Promise<void> {
    for (const p of this.processes) await p.stop('SIGKILL').catch(() => undefined);
    for (const d of this.running) await d.close().catch(() => undefined);
    this.running.clear();
    for (const b of this.brokers) await b.close();
    await this.nats.dispose();
  }
}

/**
 * For a describe block: a new World per call, each disposed (devices and broker) after its test, so
 * nothing keeps running into the next test; the test databases are dropped at the end.
 */
export function worldPerTest(): () => Promise<World> {
  const worlds: World[] = [];
  afterEach(async () => {
    for (const w of worlds.splice(0)) await w.dispose();
  });
  afterAll(() => dropTestDatabases());
  return async () => {
    const w = new World();
    worlds.push(w);
    return w.start();
  };
}

export async function deadNatsUrl(): Promise<string> {
  return `nats://127.0.0.1:${await freePort()}`;
}

export { dropTestDatabases, waitFor };

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

/** Process tests run dist/main.js: say so when it is older than the sources (run `npm run build`). */
export function warnIfStaleBuild(): void {
  const main = join(ROOT, 'dist', 'main.js');
  if (!existsSync(main)) throw new Error('dist/main.js is missing: run `npm run build` before the process tests');
  const built = statSync(main).mtimeMs;
  const src = Math.max(newestMtime(join(ROOT, 'src')), newestMtime(join(ROOT, 'libs')));
  if (src > built)
    console.warn('dist/ is older than src/ or libs/: the process tests run the previous build (run `npm run build`)');
}
