import { migrateToLatest, openDatabase, type Db } from '@lib/db';
import { createTestDatabase, dropTestDatabases, tempDataDir } from '../support/databases';

/** The two database modes a device runs on; integration tests run against both. */
export type DbMode = 'postgres' | 'pglite';
export const DB_MODES: DbMode[] = ['postgres', 'pglite'];

/** A fresh migrated database of the given mode (a cloned Postgres template, or PGlite in a temp dir). */
export async function openTestDb(mode: DbMode): Promise<Db> {
  const databaseUrl = mode === 'postgres' ? await createTestDatabase('s') : null;
  const { db } = await openDatabase({ databaseUrl, dataDir: tempDataDir('storage-test-') });
  await migrateToLatest(db);
  return db;
}

/** Closes the database and drops the Postgres databases this file created. */
export async function closeTestDb(db: Db | undefined): Promise<void> {
  await db?.destroy();
  await dropTestDatabases();
}
