import { sql } from 'kysely';
import type { Db } from '@lib/db';
import { ConflictError, NotFoundError, SharedModel, SharedState, SharedWrite, SharedWriter } from '@lib/sync';
import { Page, PageRequest, toPage } from '../http/paging';

/**
 * Shared records keyed by their own id and deleted by tombstone (tags, albums): idempotent create,
 * partial update, delete, and reads that treat a deleted record as unknown (404).
 */

/** The record if it exists and is not deleted (404 otherwise); locked for the rest of the write. */
export async function requireLiveRecord(w: SharedWrite, model: SharedModel, id: string): Promise<SharedState> {
  const state = await w.load(model, { id });
  if (!state || state.deletedHlc !== null) throw new NotFoundError(model.name, id);
  return state;
}

export class SharedRecords<V> {
  private readonly fields: string[];

  constructor(
    private readonly model: SharedModel,
    private readonly view: (id: string, values: Record<string, unknown>) => V,
    private readonly db: Db,
    private readonly writer: SharedWriter,
  ) {
    this.fields = Object.keys(model.fields);
  }

  /**
   * A new record, or the repeat of its create (same content: nothing is written, so the change
   * log does not grow). A deleted id or other content under the id is a conflict.
   */
  async create(id: string, values: Record<string, unknown>): Promise<{ record: V; created: boolean }> {
    return this.writer.transact(async (w) => {
      const current = await w.load(this.model, { id });
      if (current) {
        if (current.deletedHlc !== null)
          throw new ConflictError(`${this.model.name} ${id} was deleted; ids are never reused`);
        const same = this.fields.every((f) => current.values[f] === values[f]);
        if (!same) throw new ConflictError(`${this.model.name} ${id} already exists with different content`);
        return { record: this.view(id, current.values), created: false };
      }
      const state = await w.set(this.model, { id }, values);
      return { record: this.view(id, state.values), created: true };
    });
  }

  /** Sets the given fields; the others keep their value (and their clock). */
  async update(id: string, values: Record<string, unknown>): Promise<V> {
    return this.writer.transact(async (w) => {
      await requireLiveRecord(w, this.model, id);
      const state = await w.set(this.model, { id }, values);
      return this.view(id, state.values);
    });
  }

  /** A tombstone that wins over every concurrent or later edit of the record. */
  async remove(id: string): Promise<void> {
    await this.writer.transact(async (w) => {
      await requireLiveRecord(w, this.model, id);
      await w.delete(this.model, { id });
    });
  }

  async get(id: string): Promise<V> {
    const res = await sql<Record<string, unknown>>`select ${this.columns()} from ${sql.table(this.model.table)}
      where id = ${id} and deleted_hlc is null`.execute(this.db);
    const row = res.rows[0];
    if (!row) throw new NotFoundError(this.model.name, id);
    return this.view(id, row);
  }

  async list(page: PageRequest): Promise<Page<V>> {
    const after = page.after ? sql`and id > ${page.after}` : sql``;
    const res = await sql<
      Record<string, unknown> & { id: string }
    >`select ${this.columns()} from ${sql.table(this.model.table)}
      where deleted_hlc is null ${after} order by id limit ${page.limit + 1}`.execute(this.db);
    return toPage(
      res.rows,
      page,
      (r) => r.id,
      (r) => this.view(r.id, r),
    );
  }

  private columns() {
    return sql.join(['id', ...this.fields].map((c) => sql.ref(c)));
  }
}
