import { createHash } from 'node:crypto';

/**
 * Marks a statement as one to prepare once per connection: a hot statement of fixed text (its
 * values are parameters), such as a write's clock step or a peer message's apply call. Put it first
 * in the statement's text (it is an SQL comment: PGlite, and Postgres itself, just read past it).
 * On Postgres the pool's clients (copy.ts) run a marked statement as a named prepared statement,
 * so that the server parses it once per connection rather than on every call, and may keep its
 * plan (Postgres keeps a generic plan only when it costs no more than planning each call).
 *
 * Only for statements whose text is one of a few: every distinct text stays prepared on each
 * connection for the connection's life.
 */
export const PREPARED = '/*prepared*/ ';

const names = new Map<string, string>();

/** The statement name of a marked text: the same text always has the same name. */
export function preparedName(text: string): string {
  let name = names.get(text);
  if (!name) {
    name = `sync_${createHash('sha256').update(text).digest('hex').slice(0, 24)}`;
    names.set(text, name);
  }
  return name;
}
