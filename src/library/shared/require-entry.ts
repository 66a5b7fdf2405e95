import { NotFoundError } from '@lib/sync';
import type { DbOrTx } from '@lib/db';

/** Shared data about an entry (metadata, memberships) needs the entry to exist, whoever owns it. */
export async function requireEntry(db: DbOrTx, entryId: string): Promise<void> {
  const row = await db.selectFrom('entries').select('id').where('id', '=', entryId).executeTakeFirst();
  if (!row) throw new NotFoundError('entries', entryId);
}
