import { Kysely, sql } from 'kysely';
import { Client } from 'pg';
import type { Database } from '@lib/db';
import { LONG, TestDevice, waitFor } from './device-harness';

/**
 * Reads straight from a device's database: what the API does not show (field clocks, tombstones,
 * the change log, dead letters, checkpoints), and cheap row counts.
 */

export type DbHandle = Kysely<Database>;

type SharedTable = 'tags' | 'albums' | 'user_metadata' | 'tag_entries' | 'album_entries';

/** A shared table's rows with values and field clocks, in key order (comparable across devices). */
export async function sharedRows(db: DbHandle, table: SharedTable): Promise<Record<string, unknown>[]> {
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

/** The field clocks of one shared record. */
export async function fieldClocks(
  db: DbHandle,
  table: SharedTable,
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

/** A query on a database by URL (a device process's, which the test holds no handle of). */
export async function queryDb<T = any>(databaseUrl: string, text: string, params: unknown[] = []): Promise<T[]> {
  const c = new Client({ connectionString: databaseUrl });
  await c.connect();
  try {
    return (await c.query(text, params)).rows as T[];
  } finally {
    await c.end();
  }
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
