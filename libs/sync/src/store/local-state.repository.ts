import { sql } from 'kysely';
import type { DbOrTx } from '@lib/db';

/**
 * Small named values of this device's sync bookkeeping (`sync_local_state`): its identity, its
 * clock, its published positions, how far its change log was pruned.
 */
export class LocalStateRepository {
  async get(db: DbOrTx, key: string): Promise<string | null> {
    const row = await db.selectFrom('sync_local_state').select('value').where('key', '=', key).executeTakeFirst();
    return row?.value ?? null;
  }

  /** Reads several keys under a row lock (inside a transaction), so that they change together. */
  async getForUpdate<K extends string>(tx: DbOrTx, keys: K[]): Promise<Partial<Record<K, string>>> {
    const rows = await tx
      .selectFrom('sync_local_state')
      .select(['key', 'value'])
      .where('key', 'in', keys)
      .forUpdate()
      .execute();
    return Object.fromEntries(rows.map((r) => [r.key, r.value])) as Partial<Record<K, string>>;
  }

  async set(db: DbOrTx, key: string, value: string | null): Promise<void> {
    if (value === null) {
      await db.deleteFrom('sync_local_state').where('key', '=', key).execute();
      return;
    }
    await db
      .insertInto('sync_local_state')
      .values({ key, value })
      .onConflict((oc) => oc.column('key').doUpdateSet({ value }))
      .execute();
  }

  /** Writes the values whose keys are not stored yet; stored ones stay as they are. */
  async setMissing(db: DbOrTx, values: Record<string, string>): Promise<void> {
    await db
      .insertInto('sync_local_state')
      .values(Object.entries(values).map(([key, value]) => ({ key, value })))
      .onConflict((oc) => oc.column('key').doNothing())
      .execute();
  }

  /** Sets key to value unless it already holds a greater one (byte order, as clock stamps sort). */
  async raise(db: DbOrTx, key: string, value: string): Promise<void> {
    await sql`insert into sync_local_state (key, value) values (${key}, ${value})
      on conflict (key) do update set value = greatest(sync_local_state.value collate "C", excluded.value collate "C")`.execute(
      db,
    );
  }
}
