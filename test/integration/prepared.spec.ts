import { sql } from 'kysely';
import { PREPARED, type Db } from '@lib/db';
import { DB_MODES, useTestDb } from './storage-db';

/**
 * Statements marked PREPARED (libs/db/src/prepared.ts): on Postgres a named prepared statement of
 * the connection, parsed once and reused with each call's values; on PGlite an ordinary statement.
 * Either way the answers are those of the unmarked statement.
 */
describe.each(DB_MODES)('prepared statements on %s', (mode) => {
  let db: Db;
  useTestDb(mode, (d) => (db = d));

  const marked = (n: number) => sql<{ twice: number; text: string }>`${sql.raw(PREPARED)}select ${n}::int * 2 as twice,
    ${`n=${n}`}::text as text`;

  it('answers with each call’s values, inside and outside transactions', async () => {
    for (let n = 0; n < 8; n++) expect((await marked(n).execute(db)).rows).toEqual([{ twice: 2 * n, text: `n=${n}` }]);
    await db.transaction().execute(async (tx) => {
      expect((await marked(21).execute(tx)).rows[0].twice).toBe(42);
      expect((await marked(-4).execute(tx)).rows[0].text).toBe('n=-4');
    });
  });

  it('a marked write counts the rows it wrote', async () => {
    await db.transaction().execute(async (tx) => {
      await sql`create temp table prepared_rows (n int primary key) on commit drop`.execute(tx);
      const insert = (from: number, to: number) =>
        sql`${sql.raw(PREPARED)}insert into prepared_rows select generate_series(${from}::int, ${to}::int)
          on conflict (n) do nothing`.execute(tx);
      expect((await insert(1, 3)).numAffectedRows).toBe(3n);
      expect((await insert(2, 6)).numAffectedRows).toBe(3n);
    });
  });

  it('an error in a marked statement is the statement’s error, and the connection goes on', async () => {
    await expect(sql`${sql.raw(PREPARED)}select 1 / ${0}::int as x`.execute(db)).rejects.toThrow(/division by zero/);
    expect((await marked(5).execute(db)).rows[0].twice).toBe(10);
  });

  if (mode === 'postgres')
    it('is prepared once per connection, under one name for one text', async () => {
      await db.connection().execute(async (c) => {
        const before = await sql<{ n: number }>`select count(*)::int as n from pg_prepared_statements`.execute(c);
        for (let n = 0; n < 5; n++) await marked(n).execute(c);
        await sql`${sql.raw(PREPARED)}select ${1}::int as other`.execute(c);
        const after = await sql<{
          name: string;
          statement: string;
        }>`select name, statement from pg_prepared_statements`.execute(c);
        expect(after.rows.length - before.rows[0].n).toBeLessThanOrEqual(2);
        const ours = after.rows.filter((r) => r.statement.startsWith(PREPARED));
        expect(ours.map((r) => r.statement.includes('twice'))).toContain(true);
        expect(ours.map((r) => r.statement.includes('other'))).toContain(true);
        expect(new Set(ours.map((r) => r.name)).size).toBe(ours.length);
        expect(ours.every((r) => /^sync_[0-9a-f]{24}$/.test(r.name))).toBe(true);
      });
    });
});
