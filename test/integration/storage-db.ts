import { createHash, randomUUID } from 'node:crypto';
import { cpSync, existsSync, mkdtempSync, readdirSync, readFileSync, renameSync, rmSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { sql } from 'kysely';
import { migrateToLatest, openDatabase, type Db } from '@lib/db';
import {
  ChangeKind,
  ChangeSignal,
  ClockService,
  encodeCursor,
  encodeHlc,
  OWNED_MODELS,
  OwnedChange,
  OwnedModel,
  OwnedRepository,
  OwnedRow,
  OwnedWriter,
  TOMBSTONE_KIND,
} from '@lib/sync';
import { createTestDatabase, dropTestDatabases, tempDataDir } from '../support/databases';

/**
 * Shared set-up of the storage tests, which run against both database modes: a fresh migrated
 * database per file and mode, rows of the owned models, and the owned tables read back.
 */

/** The two database modes a device runs on; integration tests run against both. */
export type DbMode = 'postgres' | 'pglite';
export const DB_MODES: DbMode[] = ['postgres', 'pglite'];

const dataDirs: string[] = [];

/**
 * A fresh migrated database of the given mode: a clone of the run's Postgres template, or PGlite
 * in a temp dir copied from a migrated PGlite template (creating a PGlite database takes seconds).
 */
export async function openTestDb(mode: DbMode): Promise<Db> {
  const databaseUrl = mode === 'postgres' ? await createTestDatabase('s') : null;
  const dataDir = tempDataDir('storage-test-');
  dataDirs.push(dataDir);
  if (mode === 'pglite') cpSync(await pgliteTemplate(), dataDir, { recursive: true });
  const { db } = await openDatabase({ databaseUrl, dataDir });
  await migrateToLatest(db);
  return db;
}

/** Closes the database and drops the Postgres databases this file created; its PGlite directories go meanwhile. */
export async function closeTestDb(db: Db | undefined): Promise<void> {
  await db?.destroy();
  for (const dir of dataDirs.splice(0)) void rm(dir, { recursive: true, force: true }).catch(() => undefined);
  await dropTestDatabases();
}

/** Opens a fresh database of `mode` before the enclosing describe's tests and closes it after. */
export function useTestDb(mode: DbMode, opened: (db: Db) => void): void {
  let db: Db | undefined;
  beforeAll(async () => opened((db = await openTestDb(mode))));
  afterAll(() => closeTestDb(db));
}

const ROOT = join(__dirname, '..', '..');

/**
 * A data dir with a migrated PGlite database, built once per set of migrations, database code
 * and PGlite version, and kept in the temp dir across runs (like the Postgres template).
 */
async function pgliteTemplate(): Promise<string> {
  const hash = createHash('sha1');
  for (const f of [
    join(ROOT, 'node_modules', '@electric-sql', 'pglite', 'package.json'),
    join(ROOT, 'libs', 'db', 'src', 'database.ts'),
    ...readdirSync(join(ROOT, 'migrations'))
      .sort()
      .map((m) => join(ROOT, 'migrations', m)),
  ])
    hash.update(f.slice(ROOT.length)).update(readFileSync(f));
  const template = join(tmpdir(), `sync-test-pglite-${hash.digest('hex').slice(0, 12)}`);
  if (existsSync(template)) return template;
  const building = mkdtempSync(`${template}-build-`);
  const { db } = await openDatabase({ databaseUrl: null, dataDir: building });
  await migrateToLatest(db);
  await db.destroy();
  try {
    renameSync(building, template); // atomic: others see no template or a complete one
  } catch {
    rmSync(building, { recursive: true, force: true }); // a concurrent run won; its template is identical
  }
  return template;
}

// ---------------------------------------------------------------------------------------------
// Rows of the owned models

/** The clock drift bound of the test devices. */
export const DRIFT = 5 * 60_000;
const MODIFIED = '2025-01-02T03:04:05.678Z';
const UPDATED = '2025-06-01T00:00:00.000Z';

/** A version of a (remote) owner: an HLC text with that owner as node. */
export const v = (owner: string, physical: number, logical = 0) =>
  encodeHlc({ physical: 1_700_000_000_000 + physical, logical, node: owner });

export const volume = (over: Record<string, unknown> = {}) => ({
  id: randomUUID(),
  name: 'disk',
  mount_point: '/mnt/disk',
  capacity_bytes: 4_000_000_000_000,
  free_bytes: 1_000_000_000_000,
  ...over,
});
export const location = (volumeId: string | null, over: Record<string, unknown> = {}) => ({
  id: randomUUID(),
  volume_id: volumeId,
  name: 'photos',
  path: '/mnt/disk/photos',
  ...over,
});
export const entry = (locationId: string, i: number, over: Record<string, unknown> = {}) => ({
  id: randomUUID(),
  location_id: locationId,
  name: `f${i}.jpg`,
  path: `/mnt/disk/photos/f${i}.jpg`,
  kind: 'file',
  size_bytes: 1000 + i,
  modified_at: MODIFIED,
  ...over,
});
/** A row in wire form as a peer receives it from `owner`. */
export const wire = (row: Record<string, unknown>, owner: string, version: string): OwnedRow =>
  ({ ...row, device_id: owner, version, updated_at: UPDATED }) as unknown as OwnedRow;

// ---------------------------------------------------------------------------------------------
// Helpers bound to the database of the running test (`db()`, opened in its beforeAll)

export function storageHelpers(db: () => Db, repo = new OwnedRepository()) {
  const persistedClock = async () =>
    (await db().selectFrom('sync_local_state').select('value').where('key', '=', 'hlc').executeTakeFirstOrThrow())
      .value;

  /** A device with its own clock and owned write path over the shared test database. */
  async function ownerDevice(id = randomUUID()) {
    const clock = new ClockService(id, DRIFT);
    await clock.load(db());
    const signal = new ChangeSignal();
    const notified: ChangeKind[] = [];
    signal.on('owned', () => notified.push('owned'));
    signal.on('shared', () => notified.push('shared'));
    return { id, clock, notified, writer: new OwnedWriter(db(), clock, repo, signal, id) };
  }

  const rowsOf = async (table: 'volumes' | 'locations' | 'entries', owner: string) =>
    sql<Record<string, any>>`select * from ${sql.table(table)} where device_id = ${owner} order by id`
      .execute(db())
      .then((r) => r.rows);
  const tombstonesOf = (owner: string) =>
    db().selectFrom('owned_tombstones').selectAll().where('device_id', '=', owner).orderBy('id').execute();
  const find = (model: OwnedModel, id: string) => repo.find(db(), model, id);

  /** Every change of an owner, read page by page from the start. */
  async function pageAll(owner: string, limit: number, from: string | null = null): Promise<OwnedChange[]> {
    const out: OwnedChange[] = [];
    let cursor = from;
    for (let pages = 0; ; pages++) {
      expect(pages).toBeLessThan(10_000);
      const page = await repo.changesAfter(db(), owner, cursor, limit);
      expect(page.length).toBeLessThanOrEqual(limit);
      if (page.length === 0) return out;
      out.push(...page);
      cursor = page[page.length - 1].cursor;
    }
  }

  /** What an owner's change stream must hold, computed straight from the tables. */
  async function expectedCursors(owner: string): Promise<string[]> {
    const out: string[] = [];
    for (const model of OWNED_MODELS) {
      for (const r of await rowsOf(model.table, owner))
        out.push(encodeCursor({ version: r.version, kind: model.order, id: r.id }));
    }
    for (const t of await tombstonesOf(owner))
      out.push(encodeCursor({ version: t.version, kind: TOMBSTONE_KIND, id: t.id }));
    return out.sort();
  }

  return { persistedClock, ownerDevice, rowsOf, tombstonesOf, find, pageAll, expectedCursors };
}
