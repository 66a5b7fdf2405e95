import { mkdirSync, rmSync } from 'node:fs';
import { resolve } from 'node:path';
import { Kysely, Migrator, PostgresDialect, sql } from 'kysely';
import { Pool, PoolClient, types } from 'pg';
import { enableCopy } from './copy';
import { PGliteDialect } from './pglite-dialect';
import type { Database } from './schema';
import { migrations } from '../../../migrations';

// bigint and numeric columns hold byte counts far below 2^53: read them as numbers on both dialects.
types.setTypeParser(types.builtins.INT8, (v) => Number(v));

export type Db = Kysely<Database>;

/**
 * How long an idle pooled connection stays open. A new connection's first statements compile the
 * sync functions and triggers again (tens of milliseconds), and its prepared statements are gone:
 * a device that writes now and then keeps its connections rather than pay that on the next write.
 */
const IDLE_CONNECTION_MS = 5 * 60_000;

export interface DatabaseOptions {
  /** postgres://… of this device's own database; null selects embedded PGlite under dataDir. */
  databaseUrl: string | null;
  dataDir: string;
  /** Pool size for Postgres (PGlite is always one session). */
  poolSize?: number;
}

export class DatabaseConnectError extends Error {
  constructor(
    readonly variable: 'DATABASE_URL' | 'DATA_DIR',
    cause: unknown,
  ) {
    super(`${variable}: cannot open the database: ${(cause as Error)?.message ?? String(cause)}`);
    this.name = 'DatabaseConnectError';
  }
}

/** Opens the device database (Postgres or embedded PGlite) and checks that it answers. */
export async function openDatabase(opts: DatabaseOptions): Promise<{ db: Db; embedded: boolean }> {
  if (opts.databaseUrl) {
    const pool = new Pool({
      connectionString: opts.databaseUrl,
      max: opts.poolSize ?? 10,
      connectionTimeoutMillis: 10_000,
      idleTimeoutMillis: IDLE_CONNECTION_MS,
    });
    pool.on('error', () => undefined); // an idle client dropped by the server; the next query reconnects
    pool.on('connect', enableCopy); // COPY through Kysely (copy.ts)
    const db = new Kysely<Database>({ dialect: new PostgresDialect({ pool }) });
    try {
      await sql`select 1`.execute(db);
    } catch (e) {
      await db.destroy().catch(() => undefined);
      throw new DatabaseConnectError('DATABASE_URL', e);
    }
    return { db, embedded: false };
  }
  const dir = resolve(opts.dataDir, 'pglite');
  try {
    mkdirSync(dir, { recursive: true });
    const { PGlite } = await import('@electric-sql/pglite');
    const pglite = await PGlite.create(dir);
    const db = new Kysely<Database>({ dialect: new PGliteDialect(pglite) });
    await sql`select 1`.execute(db);
    return { db, embedded: true };
  } catch (e) {
    throw new DatabaseConnectError('DATA_DIR', e);
  }
}

/** Applies every pending migration of migrations/ (in `schema`, when given); throws on the first failure. */
export async function migrateToLatest(db: Db, schema?: string): Promise<string[]> {
  const migrator = new Migrator({
    db,
    provider: { getMigrations: async () => migrations },
    ...(schema ? { migrationTableSchema: schema } : {}),
  });
  const { error, results } = await migrator.migrateToLatest();
  if (error) throw error instanceof Error ? error : new Error(String(error));
  return (results ?? []).filter((r) => r.status === 'Success').map((r) => r.migrationName);
}

/**
 * Where a device keeps its libraries (API.md "Libraries"): one database, never another. On
 * Postgres every library is a schema of the one database, reached through the one pool (a
 * connection is switched to the library's schema when it is handed out); the device's root data
 * (which libraries it holds) and its first library live in `public`. With PGlite, the root is
 * DATA_DIR's database and every further library has a directory of its own under DATA_DIR.
 */
export interface DeviceStore {
  /** The root database: the device's list of libraries, its keys, and the library at `public`. */
  root: Db;
  embedded: boolean;
  /** The database of a library at `location` (`public` or a name from `locationFor`), created and migrated. */
  library(location: string): Promise<Db>;
  /** A new location for a library (a schema or directory name). */
  locationFor(libraryId: string): string;
  /** Deletes a library's data at `location` (its schema or directory; at `public`, the rows of its tables). */
  drop(location: string, db: Db | null): Promise<void>;
  close(): Promise<void>;
}

export const ROOT_LOCATION = 'public';

/** Tables of the root schema that belong to the device, not to the library stored beside them. */
const DEVICE_TABLES = new Set(['device_libraries', 'device_keys', 'kysely_migration', 'kysely_migration_lock']);

/** A pool view that hands out the shared pool's connections with search_path set to one schema. */
class SchemaPool {
  constructor(
    private readonly pool: Pool,
    private readonly schema: string,
  ) {}

  async connect(): Promise<PoolClient> {
    const client = (await this.pool.connect()) as PoolClient & { syncSchema?: string };
    if (client.syncSchema !== this.schema) {
      try {
        await client.query(`set search_path to "${this.schema}"`);
      } catch (e) {
        client.release(e as Error);
        throw e;
      }
      client.syncSchema = this.schema;
    }
    return client;
  }

  /** The pool is the device's: closed with the store, not with one library. */
  async end(): Promise<void> {}
}

/** Opens the device's store and migrates its root. */
export async function openStore(opts: DatabaseOptions): Promise<DeviceStore> {
  if (opts.databaseUrl) return openPostgresStore(opts);
  return openPGliteStore(opts);
}

async function openPostgresStore(opts: DatabaseOptions): Promise<DeviceStore> {
  const pool = new Pool({
    connectionString: opts.databaseUrl!,
    max: opts.poolSize ?? 10,
    connectionTimeoutMillis: 10_000,
    idleTimeoutMillis: IDLE_CONNECTION_MS,
  });
  pool.on('error', () => undefined); // an idle client dropped by the server; the next query reconnects
  pool.on('connect', enableCopy); // COPY through Kysely (copy.ts)
  const inSchema = (schema: string) =>
    new Kysely<Database>({ dialect: new PostgresDialect({ pool: new SchemaPool(pool, schema) }) });
  const root = inSchema(ROOT_LOCATION);
  try {
    await sql`select 1`.execute(root);
  } catch (e) {
    await pool.end().catch(() => undefined);
    throw new DatabaseConnectError('DATABASE_URL', e);
  }
  const libraries = new Map<string, Db>([[ROOT_LOCATION, root]]);
  return {
    root,
    embedded: false,
    locationFor: (libraryId) => `lib_${libraryId.replace(/-/g, '')}`,
    async library(location) {
      let db = libraries.get(location);
      if (!db) {
        if (!/^lib_[0-9a-f]{32}$/.test(location)) throw new Error(`not a library location: ${location}`);
        await sql`create schema if not exists ${sql.id(location)}`.execute(root);
        db = inSchema(location);
        await migrateToLatest(db, location);
        libraries.set(location, db);
      }
      return db;
    },
    async drop(location) {
      if (location === ROOT_LOCATION) return dropRootLibrary(root);
      libraries.delete(location);
      await sql`drop schema if exists ${sql.id(location)} cascade`.execute(root);
    },
    async close() {
      await pool.end().catch(() => undefined);
    },
  };
}

async function openPGliteStore(opts: DatabaseOptions): Promise<DeviceStore> {
  const openAt = async (dir: string, variable: 'DATA_DIR') => {
    try {
      mkdirSync(dir, { recursive: true });
      const { PGlite } = await import('@electric-sql/pglite');
      const pglite = await PGlite.create(dir);
      const db = new Kysely<Database>({ dialect: new PGliteDialect(pglite) });
      await sql`select 1`.execute(db);
      return db;
    } catch (e) {
      throw new DatabaseConnectError(variable, e);
    }
  };
  const root = await openAt(resolve(opts.dataDir, 'pglite'), 'DATA_DIR');
  const libraries = new Map<string, Db>([[ROOT_LOCATION, root]]);
  const dirOf = (location: string) => resolve(opts.dataDir, 'libraries', location);
  return {
    root,
    embedded: true,
    locationFor: (libraryId) => `lib_${libraryId.replace(/-/g, '')}`,
    async library(location) {
      let db = libraries.get(location);
      if (!db) {
        if (!/^lib_[0-9a-f]{32}$/.test(location)) throw new Error(`not a library location: ${location}`);
        db = await openAt(dirOf(location), 'DATA_DIR');
        await migrateToLatest(db);
        libraries.set(location, db);
      }
      return db;
    },
    async drop(location, db) {
      if (location === ROOT_LOCATION) return dropRootLibrary(root);
      libraries.delete(location);
      await db?.destroy().catch(() => undefined);
      rmSync(dirOf(location), { recursive: true, force: true });
    },
    async close() {
      for (const db of libraries.values()) await db.destroy().catch(() => undefined);
    },
  };
}

/** The root schema's library leaves: its rows go, the device's own tables (and its id) stay. */
async function dropRootLibrary(root: Db): Promise<void> {
  const tables = await root.introspection.getTables();
  const mine = tables.filter((t) => t.schema === ROOT_LOCATION && !DEVICE_TABLES.has(t.name)).map((t) => t.name);
  await root.transaction().execute(async (tx) => {
    const keep = await tx
      .selectFrom('sync_local_state')
      .select(['key', 'value'])
      .where('key', '=', 'device_id')
      .execute();
    if (mine.length) await sql`truncate ${sql.join(mine.map((t) => sql.id(t)))}`.execute(tx);
    if (keep.length)
      await tx
        .insertInto('sync_local_state')
        .values(keep)
        .onConflict((oc) => oc.doNothing())
        .execute();
  });
}
