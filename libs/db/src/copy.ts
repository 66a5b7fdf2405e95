import { CompiledQuery } from 'kysely';
import type { PoolClient } from 'pg';
import { from as copyFromStream, to as copyToStream } from 'pg-copy-streams';
import { PREPARED, preparedName } from './prepared';
import type { DbOrTx } from './transaction';

/**
 * COPY through Kysely, on Postgres and on PGlite alike, inside the caller's transaction. Kysely
 * has no COPY, so the statement travels as an ordinary query that the connection recognises:
 * `copy … from stdin` with the data as its one parameter, and `copy (…) to stdout` whose one
 * row's `data` is the output. On Postgres the pool's clients run them through pg-copy-streams
 * (enableCopy); on PGlite they become COPY from and to '/dev/blob' (PGliteConnection).
 * Text format, so the bytes are COPY's text rows: tab-separated, newline-ended, `\N` for null.
 */
const COPY_FROM = /^\s*copy\s[\s\S]*\sfrom\s+stdin\s*$/i;
const COPY_TO = /^\s*copy\s+\([\s\S]*\)\s+to\s+stdout\s*$/i;

export function isCopyFrom(text: string): boolean {
  return COPY_FROM.test(text);
}
export function isCopyTo(text: string): boolean {
  return COPY_TO.test(text);
}

/** Loads COPY text rows into `target` ("table (col, …)"); returns how many rows it read. */
export async function copyFrom(db: DbOrTx, target: string, data: Buffer): Promise<number> {
  const res = await db.executeQuery(CompiledQuery.raw(`copy ${target} from stdin`, [data]));
  return Number(res.numAffectedRows ?? 0);
}

/** The COPY text rows of `query`. */
export async function copyTo(db: DbOrTx, query: string): Promise<Buffer> {
  const res = await db.executeQuery<{ data: Buffer }>(CompiledQuery.raw(`copy (${query}) to stdout`));
  return res.rows[0]?.data ?? Buffer.alloc(0);
}

const COPY_READY = Symbol('copyReady');

/**
 * Teaches a pg client the two COPY forms above (once per client): its query() runs them as COPY
 * streams and answers like a query; a statement marked PREPARED (prepared.ts) runs as a named
 * prepared statement; the others as before.
 */
export function enableCopy(client: PoolClient): void {
  const c = client as PoolClient & { [COPY_READY]?: boolean };
  if (c[COPY_READY]) return;
  c[COPY_READY] = true;
  const query = client.query.bind(client) as (...args: unknown[]) => unknown;
  (client as unknown as { query: (...args: unknown[]) => unknown }).query = (...args: unknown[]) => {
    const [text, values] = args;
    if (typeof text === 'string' && text.startsWith(PREPARED)) return query({ name: preparedName(text), text, values });
    if (typeof text === 'string' && isCopyFrom(text)) {
      const data = (values as unknown[] | undefined)?.[0];
      if (!Buffer.isBuffer(data)) return Promise.reject(new Error('copy from stdin needs its data as a Buffer'));
      return new Promise((resolve, reject) => {
        const stream = query(copyFromStream(text)) as ReturnType<typeof copyFromStream>;
        stream.on('error', reject);
        stream.on('finish', () => resolve({ command: 'INSERT', rowCount: stream.rowCount, rows: [] }));
        stream.end(data);
      });
    }
    if (typeof text === 'string' && isCopyTo(text)) {
      return new Promise((resolve, reject) => {
        const stream = query(copyToStream(text)) as ReturnType<typeof copyToStream>;
        const chunks: Buffer[] = [];
        stream.on('data', (chunk: Buffer) => chunks.push(chunk));
        stream.on('error', reject);
        stream.on('end', () => resolve({ command: 'COPY', rowCount: 1, rows: [{ data: Buffer.concat(chunks) }] }));
      });
    }
    return query(...args);
  };
}
