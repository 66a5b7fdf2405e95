import { createHash } from 'node:crypto';
import { QueryResult, RawBuilder, sql } from 'kysely';
import type { DbOrTx } from '@lib/db';
import { MODELS, SyncModel } from './registry';

export interface ModelDigest {
  count: number;
  hash: string;
}

const PAGE = 5000;

/**
 * A hash of each model's canonical content: every synced field of every live record (tombstones,
 * deleted shared records and absent memberships excluded), in key order. Two devices have equal
 * digests exactly when they hold the same data; field clocks and local bookkeeping are not hashed.
 */
export async function computeDigest(db: DbOrTx): Promise<Record<string, ModelDigest>> {
  const out: Record<string, ModelDigest> = {};
  for (const model of MODELS) out[model.name] = await digestModel(db, model);
  return out;
}

async function digestModel(db: DbOrTx, model: SyncModel): Promise<ModelDigest> {
  const keys = model.kind === 'owned' ? ['id'] : model.keyColumns;
  const columns = model.kind === 'owned' ? model.columns : [...model.keyColumns, ...Object.keys(model.fields)];
  const live =
    model.kind === 'owned'
      ? sql`true`
      : model.deletable
        ? sql`deleted_hlc is null`
        : 'present' in model.fields
          ? sql`present`
          : sql`true`;
  const hash = createHash('sha256');
  let count = 0;
  let after: unknown[] | null = null;
  for (;;) {
    const keyTuple = sql`(${sql.join(keys.map((k) => sql.ref(k)))})`;
    const cond: RawBuilder<unknown> = after
      ? sql`${keyTuple} > (${sql.join(after.map((v) => sql`${v}::uuid`))})`
      : sql`true`;
    const res: QueryResult<Record<string, unknown>> = await sql<
      Record<string, unknown>
    >`select ${sql.join(columns.map((c) => sql.ref(c)))} from ${sql.table(model.table)}
      where ${live} and ${cond} order by ${sql.join(keys.map((k) => sql.ref(k)))} limit ${PAGE}`.execute(db);
    for (const row of res.rows) {
      const canonical = columns.map((c) => {
        const v = row[c];
        return v instanceof Date ? v.toISOString() : v;
      });
      hash.update(JSON.stringify(canonical));
      hash.update('\n');
    }
    count += res.rows.length;
    if (res.rows.length < PAGE) break;
    const last: Record<string, unknown> = res.rows[res.rows.length - 1];
    after = keys.map((k) => last[k]);
  }
  return { count, hash: hash.digest('hex') };
}
