import { mkdirSync } from 'node:fs';
import { resolve } from 'node:path';
import { Kysely, Migrator, PostgresDialect, sql } from 'kysely';
import { Pool, types } from 'pg';
import { PGliteDialect } from './pglite-dialect';
import type { Database } from './schema';
import { migrations } from '../../../migrations';

// bigint and numeric columns hold byte counts far below 2^53: read them as numbers on both dialects.
types.setTypeParser(types.builtins.INT8, (v) => Number(v));

export type Db = Kysely<Database>;

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
    });
    pool.on('error', () => undefined); // an idle client dropped by the server; the next query reconnects
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

/** Applies every pending migration of migrations/; throws on the first failure. */
export async function migrateToLatest(db: Db): Promise<string[]> {
  const migrator = new Migrator({ db, provider: { getMigrations: async () => migrations } });
  const { error, results } = await migrator.migrateToLatest();
  if (error) throw error instanceof Error ? error : new Error(String(error));
  return (results ?? []).filter((r) => r.status === 'Success').map((r) => r.migrationName);
}
