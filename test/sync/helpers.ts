import { randomUUID } from 'node:crypto';
import { ChildProcess, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, openSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Kysely, sql } from 'kysely';
import { connect, NatsConnection } from 'nats';
import type { Database } from '@lib/db';
import { createTestDatabase, dropTestDatabases, tempDataDir } from '../support/databases';
import {
  DeviceProcess,
  HttpResult,
  startTestDevice,
  TestDevice,
  TestDeviceOptions,
  waitFor,
} from '../support/device-harness';
import { freePort, NatsServerProcess, natsServerBinary } from '../support/nats-server';
import { portOpen } from '../support/services';

/**
 * Shared helpers of the multi-device sync tests: clusters of devices around a nats-server of the
 * test's own, convergence checks through the public API (/sync/digest, reads), raw JetStream
 * publishing of crafted wire messages, and background writers that record what the API
 * acknowledged.
 */

/** Generous deadline of every wait: the tests should pass in seconds, but never flake on a slow CI. */
export const LONG = 60_000;

/** What a test needs of a device, in-process (TestDevice) or a real process (DeviceProcess). */
export interface Peer {
  readonly url: string;
  req<T = any>(method: string, path: string, body?: unknown): Promise<HttpResult<T>>;
  list<T = any>(path: string): Promise<T[]>;
}

export type Digest = Record<string, { count: number; hash: string }>;

export interface SyncStatusBody {
  deviceId: string;
  deviceName: string;
  libraryId: string;
  phase: string;
  hlc: string;
  sharedLogSize: number;
  peers: {
    deviceId: string;
    deviceName: string;
    online: boolean;
    lastSeenAt: string | null;
    stateWatermark: string | null;
    sharedWatermark: string | null;
    pendingToPeer: number;
  }[];
  clockDriftHeld?: number;
  deadLetters?: number;
  natsConnected?: boolean;
}

/** The request must succeed (2xx); returns the body, or throws with the status and body. */
export async function must<T = any>(p: Peer, method: string, path: string, body?: unknown): Promise<T> {
  const r = await p.req<T>(method, path, body);
  if (r.status < 200 || r.status >= 300)
    throw new Error(`${method} ${path} -> ${r.status} ${JSON.stringify(r.body).slice(0, 500)}`);
  return r.body;
}

export async function digestOf(p: Peer): Promise<Digest> {
  return (await must<{ models: Digest }>(p, 'GET', '/sync/digest')).models;
}

export async function statusOf(p: Peer): Promise<SyncStatusBody> {
  return must<SyncStatusBody>(p, 'GET', '/sync/status');
}

/**
 * Waits until every device reports the same digest (equal digests: the same data), and, when
 * given, the expected number of live records per model. Returns the common digest.
 */
export async function waitConverged(
  peers: Peer[],
  counts: Record<string, number> = {},
  timeoutMs = LONG,
): Promise<Digest> {
  return waitFor(
    `${peers.length} devices to converge${Object.keys(counts).length ? ` on ${JSON.stringify(counts)}` : ''}`,
    async () => {
      const digests = await Promise.all(peers.map(digestOf));
      const text = digests.map((d) => JSON.stringify(d));
      if (!text.every((t) => t === text[0])) {
        const brief = digests.map((d) =>
          Object.fromEntries(Object.entries(d).map(([m, v]) => [m, `${v.count}:${v.hash.slice(0, 8)}`])),
        );
        throw new Error(`digests differ: ${JSON.stringify(brief)}`);
      }
      for (const [model, n] of Object.entries(counts)) {
        if (digests[0][model]?.count !== n)
          throw new Error(`${model}: ${digests[0][model]?.count} records, expecting ${n}`);
      }
      return digests[0];
    },
    timeoutMs,
    150,
  );
}

/** Waits until the device's sync has linked (phase ready). */
export async function waitReady(p: Peer, timeoutMs = LONG): Promise<SyncStatusBody> {
  return waitFor(
    `${p.url} to be ready`,
    async () => {
      const s = await statusOf(p);
      if (s.phase !== 'ready') throw new Error(`phase ${s.phase}`);
      return s;
    },
    timeoutMs,
    100,
  );
}

/** Waits until the device's durable consumer exists on the library's stream (so it queues what comes next). */
export async function waitConsumer(
  natsUrl: string,
  libraryId: string,
  deviceId: string,
  timeoutMs = LONG,
): Promise<void> {
  const nc = await connect({ servers: natsUrl });
  try {
    const jsm = await nc.jetstreamManager();
    await waitFor(
      `durable consumer of ${deviceId}`,
      async () => !!(await jsm.consumers.info(streamName(libraryId), durableName(deviceId))),
      timeoutMs,
      100,
    );
  } finally {
    await nc.close();
  }
}

// ---------------------------------------------------------------------------------------------
// Clusters of devices

/** What a test does with its nats-server. */
export interface NatsServer {
  readonly url: string;
  start(): Promise<void>;
  stop(): Promise<void>;
  wipe(): void;
  dispose(): Promise<void>;
}

/** A nats-server of the test's own with a configuration file (for limits like max_payload). */
export class ConfiguredNats implements NatsServer {
  private proc: ChildProcess | null = null;
  private readonly dir = mkdtempSync(join(tmpdir(), 'nats-conf-'));
  port = 0;

  constructor(private readonly settings: string) {}

  get url(): string {
    return `nats://127.0.0.1:${this.port}`;
  }

  async start(): Promise<void> {
    const bin = natsServerBinary();
    if (!bin) throw new Error('nats-server is not installed');
    if (!this.port) this.port = await freePort();
    const conf = join(this.dir, 'nats.conf');
    writeFileSync(
      conf,
      `host: 127.0.0.1\nport: ${this.port}\n${this.settings}\njetstream { store_dir: "${join(this.dir, 'js')}" }\n`,
    );
    const log = openSync(join(this.dir, 'nats.log'), 'a');
    this.proc = spawn(bin, ['-c', conf], { stdio: ['ignore', log, log] });
    await waitFor(
      'nats-server to listen',
      async () => {
        if (this.proc?.exitCode !== null) throw new Error(`nats-server exited with ${this.proc?.exitCode}`);
        return portOpen('127.0.0.1', this.port, 300);
      },
      15_000,
      50,
    );
  }

  async stop(): Promise<void> {
    const p = this.proc;
    this.proc = null;
    if (!p || p.exitCode !== null) return;
    await new Promise<void>((r) => {
      p.once('exit', () => r());
      p.kill('SIGKILL');
    });
  }

  wipe(): void {
    rmSync(join(this.dir, 'js'), { recursive: true, force: true });
  }

  async dispose(): Promise<void> {
    await this.stop();
    rmSync(this.dir, { recursive: true, force: true });
  }
}

export interface ClusterDeviceOptions extends Partial<Omit<TestDeviceOptions, 'libraryId'>> {
  libraryId?: string;
}

/**
 * One test's world: its own nats-server, a library id, and in-process devices each with its own
 * Postgres database. `dispose()` closes everything.
 */
export class Cluster {
  readonly devices: TestDevice[] = [];
  readonly processes: DeviceProcess[] = [];
  private readonly extra: (() => Promise<void>)[] = [];

  constructor(
    readonly libraryId: string = randomUUID(),
    readonly nats: NatsServer = new NatsServerProcess(),
  ) {}

  async start(): Promise<this> {
    await this.nats.start();
    return this;
  }

  get natsUrl(): string {
    return this.nats.url;
  }

  /** A new in-process device (fresh database unless one is given), ready with its consumer. */
  async device(name: string, o: ClusterDeviceOptions = {}): Promise<TestDevice> {
    const libraryId = o.libraryId ?? this.libraryId;
    const databaseUrl = o.databaseUrl === undefined ? await createTestDatabase(`sync_${name}`) : o.databaseUrl;
    const d = await startTestDevice({ ...o, name, libraryId, databaseUrl, natsUrl: this.natsUrl });
    this.devices.push(d);
    if (o.syncEnabled !== false) {
      await waitReady(d);
      await waitConsumer(this.natsUrl, libraryId, d.deviceId);
    }
    return d;
  }

  /** Several new devices, started side by side. */
  async startDevices(names: string[], o: ClusterDeviceOptions = {}): Promise<TestDevice[]> {
    return Promise.all(names.map((n) => this.device(n, o)));
  }

  /** Starts a device again on its database and id (after close()). */
  async restart(d: TestDevice, o: { wait?: boolean } = {}): Promise<TestDevice> {
    await d.close();
    const again = await startTestDevice({
      name: d.config.deviceName,
      libraryId: d.config.libraryId,
      databaseUrl: d.config.databaseUrl,
      dataDir: d.config.dataDir,
      deviceId: d.deviceId,
      natsUrl: this.natsUrl,
      syncEnabled: d.config.syncEnabled,
      maxClockDriftMs: d.config.maxClockDriftMs,
    });
    this.devices.push(again);
    if (o.wait !== false) await waitReady(again);
    return again;
  }

  /** A real device process (dist/main.js) of this library, with its own database; not started yet. */
  async process(name: string, env: Record<string, string> = {}): Promise<DeviceProcess> {
    requireBuild();
    const dir = tempDataDir(`proc-${name}-`);
    const p = new DeviceProcess(
      {
        DEVICE_ID: randomUUID(),
        DEVICE_NAME: name,
        LIBRARY_ID: this.libraryId,
        DATABASE_URL: await createTestDatabase(`sync_${name}`),
        DATA_DIR: join(dir, 'data'),
        NATS_URL: this.natsUrl,
        PORT: '',
        SYNC_ENABLED: '',
        SYNC_MAX_CLOCK_DRIFT_MS: '',
        ...env,
      },
      dir,
    );
    this.processes.push(p);
    return p;
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
    for (const d of this.devices) await d.close().catch(() => undefined);
    for (const fn of this.extra) await fn().catch(() => undefined);
    await this.nats.dispose().catch(() => undefined);
    await dropTestDatabases().catch(() => undefined);
  }
}

const MAIN = join(__dirname, '..', '..', 'dist', 'main.js');

export function requireBuild(): void {
  if (!existsSync(MAIN)) throw new Error(`${MAIN} is missing: run \`npm run build\` first`);
}

/** Starts a device process on a free port and waits until it is ready. */
export async function startProcess(p: DeviceProcess, port?: number): Promise<void> {
  await p.start(port ?? (p.port || (await freePort())));
  await waitReady(p);
}

// ---------------------------------------------------------------------------------------------
// Fixtures through the API

export interface EntryInput {
  id: string;
  locationId: string;
  name: string;
  path: string;
  kind: 'file' | 'dir';
  sizeBytes: number;
  modifiedAt: string;
}

export function entryInput(locationId: string, i: number, id: string = randomUUID()): EntryInput {
  return {
    id,
    locationId,
    name: `f${i}.jpg`,
    path: `/data/f${i}.jpg`,
    kind: 'file',
    sizeBytes: 1000 + i,
    modifiedAt: new Date(1_700_000_000_000 + i * 1000).toISOString(),
  };
}

/** A volume and a location of the device, returned with their ids. */
export async function createLocation(p: Peer, label: string): Promise<{ volumeId: string; locationId: string }> {
  const volume = await must(p, 'POST', '/volumes', {
    name: `vol-${label}`,
    mountPoint: `/mnt/${label}`,
    capacityBytes: 1_000_000_000,
    freeBytes: 500_000_000,
  });
  const location = await must(p, 'POST', '/locations', {
    name: `loc-${label}`,
    path: `/mnt/${label}/photos`,
    volumeId: volume.id,
  });
  return { volumeId: volume.id, locationId: location.id };
}

/** n new entries in one batch (ids chosen here); returns their ids. */
export async function createEntries(p: Peer, locationId: string, n: number, from = 0): Promise<string[]> {
  const items = Array.from({ length: n }, (_, i) => entryInput(locationId, from + i));
  await must(p, 'POST', '/entries/batch', { items });
  return items.map((e) => e.id);
}

/** Runs fn over items with at most `width` in flight. */
export async function parallel<T>(
  items: readonly T[],
  width: number,
  fn: (item: T, i: number) => Promise<unknown>,
): Promise<void> {
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const i = next++;
      await fn(items[i], i);
    }
  };
  await Promise.all(Array.from({ length: Math.min(width, items.length) }, worker));
}

// ---------------------------------------------------------------------------------------------
// The wire (transport/messages.ts, transport/subjects.ts), written out here on purpose: these
// tests speak the protocol as a foreign device would.

export const streamName = (libraryId: string): string => `SYNC_${libraryId.replace(/-/g, '')}`;
export const durableName = (deviceId: string): string => `device_${deviceId.replace(/-/g, '')}`;
export const logSubject = (libraryId: string, kind: 'state' | 'shared' | 'hello', origin: string): string =>
  `sync.${libraryId}.log.${kind}.${origin}`;

/** A clock stamp as the engine encodes it: 15 digits of ms, 6 of counter, the node id. */
export function stamp(ms: number, logical: number, node: string): string {
  return `${String(ms).padStart(15, '0')}-${String(logical).padStart(6, '0')}-${node}`;
}
export const stampMs = (hlc: string): number => Number(hlc.slice(0, 15));

/** An owned-stream cursor: (version, model order, id); entries are order 2, locations 1, volumes 0, tombstones 9. */
export const cursor = (version: string, kind: number, id: string): string => `${version}|${kind}|${id}`;

export interface WireChange {
  hlc: string;
  model: string;
  record_key: string;
  op: 'set' | 'delete';
  fields: Record<string, unknown>;
}

export function sharedMessage(
  libraryId: string,
  origin: string,
  changes: WireChange[],
  prev: string | null = null,
): Record<string, unknown> {
  return { v: 1, kind: 'shared', library: libraryId, origin, prev, changes };
}

export function stateMessage(
  libraryId: string,
  origin: string,
  body: {
    from: string | null;
    to: string;
    rows?: { model: string; row: Record<string, unknown> }[];
    tombstones?: { model: string; id: string; device_id: string; version: string }[];
  },
): Record<string, unknown> {
  return {
    v: 1,
    kind: 'state',
    library: libraryId,
    origin,
    from: body.from,
    to: body.to,
    rows: body.rows ?? [],
    tombstones: body.tombstones ?? [],
  };
}

/** An entries row in wire form (snake_case, ISO timestamps), owned by `owner` at `version`. */
export function entryRow(
  owner: string,
  version: string,
  o: { id: string; locationId: string; name: string },
): Record<string, unknown> {
  return {
    id: o.id,
    device_id: owner,
    location_id: o.locationId,
    name: o.name,
    path: `/forged/${o.name}`,
    kind: 'file',
    size_bytes: 1,
    modified_at: '2024-01-01T00:00:00.000Z',
    version,
    updated_at: new Date(stampMs(version)).toISOString(),
  };
}

/** A raw JetStream client, publishing straight into a library's stream. */
export class RawNats {
  private constructor(readonly nc: NatsConnection) {}

  static async connect(url: string): Promise<RawNats> {
    return new RawNats(await connect({ servers: url }));
  }

  /** Publishes a payload (object → JSON, string → as is) with its own Nats-Msg-Id; returns the PubAck. */
  async publish(
    subject: string,
    payload: unknown,
    msgID: string = randomUUID(),
  ): Promise<{ seq: number; duplicate: boolean }> {
    const data = typeof payload === 'string' ? Buffer.from(payload) : Buffer.from(JSON.stringify(payload));
    const ack = await this.nc.jetstream().publish(subject, data, { msgID });
    return { seq: ack.seq, duplicate: ack.duplicate };
  }

  async close(): Promise<void> {
    await this.nc.close().catch(() => undefined);
  }
}

// ---------------------------------------------------------------------------------------------
// Database reads (what the API does not show: field clocks, tombstones, the log, dead letters)

export type DbHandle = Kysely<Database>;

/** A shared table's rows with values and field clocks, in key order (comparable across devices). */
export async function sharedRows(
  db: DbHandle,
  table: 'tags' | 'albums' | 'user_metadata' | 'tag_entries' | 'album_entries',
): Promise<Record<string, unknown>[]> {
  const keys =
    table === 'user_metadata'
      ? 'entry_id'
      : table === 'tag_entries'
        ? 'tag_id, entry_id'
        : table === 'album_entries'
          ? 'album_id, entry_id'
          : 'id';
  const res = await sql<Record<string, unknown>>`select * from ${sql.table(table)} order by ${sql.raw(keys)}`.execute(
    db,
  );
  return res.rows.map((r) => ({ ...r, clocks: typeof r.clocks === 'string' ? JSON.parse(r.clocks) : r.clocks }));
}

export async function fieldClocks(
  db: DbHandle,
  table: 'tags' | 'albums' | 'user_metadata' | 'tag_entries' | 'album_entries',
  where: Record<string, string>,
): Promise<Record<string, string>> {
  const cond = sql.join(
    Object.entries(where).map(([k, v]) => sql`${sql.ref(k)} = ${v}`),
    sql` and `,
  );
  const res = await sql<{ clocks: unknown }>`select clocks from ${sql.table(table)} where ${cond}`.execute(db);
  if (!res.rows[0]) throw new Error(`no ${table} row ${JSON.stringify(where)}`);
  const c = res.rows[0].clocks;
  return (typeof c === 'string' ? JSON.parse(c) : c) as Record<string, string>;
}

export async function deadLetters(
  db: DbHandle,
): Promise<{ subject: string; origin: string | null; reason: string; payload: string }[]> {
  return db.selectFrom('dead_letters').select(['subject', 'origin', 'reason', 'payload']).orderBy('id').execute();
}

export async function logSize(db: DbHandle): Promise<number> {
  const r = await db
    .selectFrom('shared_changes')
    .select((eb) => eb.fn.countAll<string>().as('n'))
    .executeTakeFirstOrThrow();
  return Number(r.n);
}

// ---------------------------------------------------------------------------------------------
// Background writers: a stream of writes whose acknowledged (2xx) results are recorded

export interface WriterStats {
  /** Entry ids of acknowledged batches. */
  entries: string[];
  /** Ids of acknowledged tag creates. */
  tags: string[];
  /** Acknowledged metadata notes per entry id (one write per entry). */
  notes: Map<string, string>;
  batches: number;
  failures: number;
}

/**
 * Writes on `p` in a loop until stopped: a batch of entries, a tag, a metadata PUT on an entry of
 * the batch. Failed requests (device killed, 5xx) are counted and the loop goes on; only what
 * the API acknowledged is recorded.
 */
export function startWriter(p: Peer, locationId: string, o: { batch?: number; label?: string } = {}) {
  const stats: WriterStats = { entries: [], tags: [], notes: new Map(), batches: 0, failures: 0 };
  const batch = o.batch ?? 100;
  const label = o.label ?? 'w';
  let stopped = false;
  let i = 0;
  const attempt = async <T>(fn: () => Promise<HttpResult<T>>): Promise<HttpResult<T> | null> => {
    try {
      const r = await fn();
      if (r.status >= 200 && r.status < 300) return r;
      if (r.status < 500) throw new Error(`unexpected ${r.status}: ${JSON.stringify(r.body).slice(0, 300)}`);
    } catch (e) {
      if (/unexpected \d+/.test((e as Error).message)) throw e;
    }
    stats.failures++;
    // the device is down: a short pause between attempts, not a synchronisation
    await new Promise((r) => setTimeout(r, 50));
    return null;
  };
  const loop = (async () => {
    while (!stopped) {
      const n = i++;
      const items = Array.from({ length: batch }, (_, k) => entryInput(locationId, n * batch + k));
      const batchDone = await attempt(() => p.req('POST', '/entries/batch', { items }));
      if (batchDone) {
        stats.entries.push(...items.map((e) => e.id));
        stats.batches++;
      }
      const tagId = randomUUID();
      if (await attempt(() => p.req('POST', '/tags', { id: tagId, name: `${label}-tag-${n}`, color: 'red' })))
        stats.tags.push(tagId);
      if (batchDone) {
        // one attempt per entry: a lost response cannot leave a later value than the one recorded
        const target = items[0].id;
        const notes = `${label}-note-${n}`;
        if (await attempt(() => p.req('PUT', `/entries/${target}/metadata`, { notes }))) stats.notes.set(target, notes);
      }
    }
  })();
  return {
    stats,
    /** Waits until at least n more batches than now have been acknowledged. */
    async progress(n: number, timeoutMs = LONG): Promise<void> {
      const goal = stats.batches + n;
      await waitFor(`${label}: ${goal} acknowledged batches`, () => stats.batches >= goal, timeoutMs, 20);
    },
    async stop(): Promise<WriterStats> {
      stopped = true;
      await loop;
      return stats;
    },
  };
}

/** Checks that every acknowledged write of `stats` is readable on `p`. */
export async function expectAcknowledgedWrites(p: Peer, stats: WriterStats): Promise<void> {
  const entries = new Set((await p.list<{ id: string }>('/entries')).map((e) => e.id));
  const missingEntries = stats.entries.filter((id) => !entries.has(id));
  const tags = new Set((await p.list<{ id: string }>('/tags')).map((t) => t.id));
  const missingTags = stats.tags.filter((id) => !tags.has(id));
  const notes = new Map(
    (await p.list<{ entryId: string; notes: string | null }>('/metadata')).map((m) => [m.entryId, m.notes]),
  );
  const wrongNotes = [...stats.notes].filter(([id, n]) => notes.get(id) !== n);
  expect({
    url: p.url,
    missingEntries: missingEntries.length,
    missingTags: missingTags.length,
    wrongNotes: wrongNotes.length,
  }).toEqual({
    url: p.url,
    missingEntries: 0,
    missingTags: 0,
    wrongNotes: 0,
  });
}
