import type { Kysely, Transaction } from 'kysely';
import type { Database } from './schema';

/** A handle that is either the database or an open transaction on it. */
export type DbOrTx = Kysely<Database> | Transaction<Database>;

/**
 * Runs fn in a transaction, or inside the caller's transaction when one is given, so that a
 * write, its change-log row and its outbox entry commit together (the Docmost pattern).
 */
export async function executeTx<T>(db: DbOrTx, fn: (tx: Transaction<Database>) => Promise<T>): Promise<T> {
  if (db.isTransaction) return fn(db as Transaction<Database>);
  return db.transaction().execute(fn);
}
