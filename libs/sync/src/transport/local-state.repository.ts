import type { DbOrTx } from '@lib/db';

/** Small named values of this device's sync bookkeeping (published positions and the like). */
export class LocalStateRepository {
  async get(db: DbOrTx, key: string): Promise<string | null> {
    const row = await db.selectFrom('sync_local_state').select('value').where('key', '=', key).executeTakeFirst();
    return row?.value ?? null;
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
}
