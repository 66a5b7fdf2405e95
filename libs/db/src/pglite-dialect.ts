import type { PGlite } from '@electric-sql/pglite';
import {
  CompiledQuery,
  DatabaseConnection,
  DatabaseIntrospector,
  Dialect,
  Driver,
  Kysely,
  PostgresAdapter,
  PostgresIntrospector,
  PostgresQueryCompiler,
  QueryResult,
  TransactionSettings,
  DialectAdapter,
  QueryCompiler,
} from 'kysely';
import { isCopyFrom, isCopyTo } from './copy';
import { PREPARED } from './prepared';

/**
 * Kysely over embedded PGlite. PGlite is one session, so connections are handed out one at a time:
 * a transaction holds the only connection until it commits, exactly like a pool of size one.
 */
export class PGliteDialect implements Dialect {
  constructor(private readonly db: PGlite) {}
  createAdapter(): DialectAdapter {
    return new PostgresAdapter();
  }
  createDriver(): Driver {
    return new PGliteDriver(this.db);
  }
  createIntrospector(db: Kysely<unknown>): DatabaseIntrospector {
    return new PostgresIntrospector(db);
  }
  createQueryCompiler(): QueryCompiler {
    return new PostgresQueryCompiler();
  }
}

class PGliteDriver implements Driver {
  private readonly connection: PGliteConnection;
  private queue: Promise<void> = Promise.resolve();
  private release: (() => void) | null = null;

  constructor(private readonly db: PGlite) {
    this.connection = new PGliteConnection(db);
  }

  async init(): Promise<void> {
    await this.db.waitReady;
  }

  async acquireConnection(): Promise<DatabaseConnection> {
    const previous = this.queue;
    let release!: () => void;
    this.queue = new Promise<void>((r) => (release = r));
    await previous;
    this.release = release;
    return this.connection;
  }

  async beginTransaction(conn: DatabaseConnection, settings: TransactionSettings): Promise<void> {
    const iso = settings.isolationLevel ? ` isolation level ${settings.isolationLevel}` : '';
    await conn.executeQuery(CompiledQuery.raw(`begin${iso}`));
  }

  async commitTransaction(conn: DatabaseConnection): Promise<void> {
    await conn.executeQuery(CompiledQuery.raw('commit'));
  }

  async rollbackTransaction(conn: DatabaseConnection): Promise<void> {
    await conn.executeQuery(CompiledQuery.raw('rollback'));
  }

  async releaseConnection(): Promise<void> {
    const r = this.release;
    this.release = null;
    r?.();
  }

  async destroy(): Promise<void> {
    await this.queue;
    if (!this.db.closed) await this.db.close();
  }
}

class PGliteConnection implements DatabaseConnection {
  constructor(private readonly db: PGlite) {}

  async executeQuery<R>(query: CompiledQuery): Promise<QueryResult<R>> {
    // COPY (copy.ts): from and to '/dev/blob', PGlite's way of passing COPY data
    if (isCopyFrom(query.sql)) {
      const data = query.parameters[0] as Buffer;
      const res = await this.db.query(query.sql.replace(/stdin\s*$/i, "'/dev/blob'"), [], {
        blob: new Blob([data]),
      });
      return { rows: [], numAffectedRows: BigInt(res.affectedRows ?? 0) };
    }
    if (isCopyTo(query.sql)) {
      const res = await this.db.query(query.sql.replace(/stdout\s*$/i, "'/dev/blob'"));
      const data = res.blob ? Buffer.from(await res.blob.arrayBuffer()) : Buffer.alloc(0);
      return { rows: [{ data } as R] };
    }
    // PGlite prepares nothing across calls; it reads a statement's kind from its first word, so
    // the PREPARED mark (a leading comment) goes
    if (query.sql.startsWith(PREPARED))
      query = CompiledQuery.raw(query.sql.slice(PREPARED.length), [...query.parameters]);
    // Without parameters use the simple protocol, which (as with pg) allows several statements.
    const res =
      query.parameters.length === 0
        ? ((await this.db.exec(query.sql)).at(-1) ?? { rows: [], affectedRows: 0 })
        : await this.db.query<R>(query.sql, query.parameters as unknown[]);
    const affected = res.affectedRows ?? 0;
    return {
      rows: res.rows as R[],
      numAffectedRows: /^\s*(insert|update|delete|merge)/i.test(query.sql) ? BigInt(affected) : undefined,
    };
  }

  // eslint-disable-next-line require-yield
  async *streamQuery<R>(): AsyncIterableIterator<QueryResult<R>> {
    throw new Error('streaming queries are not supported on PGlite; page with keyset queries instead');
  }
}
