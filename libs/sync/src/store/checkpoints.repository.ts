import type { DbOrTx } from '@lib/db';

/** Resumable progress (`sync_checkpoints`): a key per unit of work, committed with the work it covers. */
export class CheckpointsRepository {
  async get(db: DbOrTx, key: string): Promise<string | null> {
    const row = await db.selectFrom('sync_checkpoints').select('value').where('key', '=', key).executeTakeFirst();
    return row?.value ?? null;
  }

  async set(db: DbOrTx, key: string, value: string): Promise<void> {
    await db
      .insertInto('sync_checkpoints')
      .values({ key, value, updated_at: new Date() })
      .onConflict((oc) => oc.column('key').doUpdateSet({ value, updated_at: new Date() }))
      .execute();
  }

  /** Forgets every checkpoint whose key starts with prefix. */
  async clear(db: DbOrTx, prefix: string): Promise<void> {
    await db.deleteFrom('sync_checkpoints').where('key', 'like', `${prefix}%`).execute();
  }
}
