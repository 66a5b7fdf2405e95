import { sql } from 'kysely';
import { DbOrTx, executeTx } from '@lib/db';

import type { SharedModel } from '../models/registry';
import { ident, literal } from '../models/sql-text';
import { LocalStateRepository } from '../store/local-state.repository';
import type { SharedState } from './merge';

const PRUNED_KEY = 'shared_pruned_upto';

export interface ChangeLogRow {
  hlc: string;
  model: string;
  record_key: string;
  op: 'set' | 'delete';
  fields: Record<string, unknown>;
}

/**
 * A field's SQL form: the registry's shared fields are text (nullable or not) or boolean, told
 * apart by their initial value.
 */
function fieldSql(initial: unknown): { value: (json: string) => string; initial: string } {
  if (typeof initial === 'boolean') return { value: (j) => `(${j})::boolean`, initial: String(initial) };
  return { value: (j) => `(${j} #>> '{}')`, initial: initial === null ? 'null' : literal(String(initial)) };
}

/**
 * The statement that merges a shared message's changes of one model into its records, field by
 * field, as merge.ts's applyChange does (sync_apply_shared runs it with $1 the message as jsonb:
 * its `changes`, `[{hlc, model, record_key, op, fields}]`, record keys already checked): each
 * field takes the value of the newest edit, when it is newer than the record's clock of that
 * field; a delete keeps the newest delete stamp; updated_hlc is the newest stamp merged. Returns
 * one row: how many records changed, and how many edits lost to a newer one held (conflicts
 * resolved).
 */
export function mergeStatement(model: SharedModel): string {
  const t = ident(model.table);
  const keys = model.keyColumns.map(ident);
  const fields = Object.entries(model.fields).map(([name, f]) => ({ name, q: ident(name), ...fieldSql(f.initial) }));
  const C = (e: string) => `${e} collate "C"`;
  // per field: the newest edit's stamp and value among the batch's edits of it
  const perField = fields.map(
    (f, i) => `max(${C('c.hlc')}) filter (where c.op = 'set' and c.f ? ${literal(f.name)}) as c${i},
      (array_agg(c.f -> ${literal(f.name)} order by ${C('c.hlc')} desc) filter (where c.op = 'set' and c.f ? ${literal(f.name)}))[1] as v${i}`,
  );
  const newer = (a: string, b: string) => `(${b} is not null and (${a} is null or ${C(b)} > ${C(a)}))`;
  const cols = [
    ...keys,
    ...fields.map((f) => f.q),
    'clocks',
    'updated_hlc',
    ...(model.deletable ? ['deleted_hlc'] : []),
  ];
  const values = [
    ...keys.map((k) => `a.${k}`),
    ...fields.map((f, i) => `case when a.c${i} is null then ${f.initial} else ${f.value(`a.v${i}`)} end`),
    `jsonb_strip_nulls(jsonb_build_object(${fields.map((f, i) => `${literal(f.name)}, a.c${i}`).join(', ')}))`,
    'a.up',
    ...(model.deletable ? ['a.del'] : []),
  ];
  const held = (f: string) => `${t}.clocks ->> ${literal(f)}`;
  const incoming = (f: string) => `excluded.clocks ->> ${literal(f)}`;
  const updates = [
    ...fields.map(
      (f) => `${f.q} = case when ${newer(held(f.name), incoming(f.name))} then excluded.${f.q} else ${t}.${f.q} end`,
    ),
    `clocks = ${t}.clocks || jsonb_strip_nulls(jsonb_build_object(${fields
      .map((f) => `${literal(f.name)}, case when ${newer(held(f.name), incoming(f.name))} then ${incoming(f.name)} end`)
      .join(', ')}))`,
    `updated_hlc = greatest(${C(`${t}.updated_hlc`)}, ${C('excluded.updated_hlc')})`,
    ...(model.deletable
      ? [
          `deleted_hlc = case when ${newer(`${t}.deleted_hlc`, 'excluded.deleted_hlc')} then excluded.deleted_hlc else ${t}.deleted_hlc end`,
        ]
      : []),
  ];
  const changed = [
    `${C('excluded.updated_hlc')} > ${C(`${t}.updated_hlc`)}`,
    ...(model.deletable ? [newer(`${t}.deleted_hlc`, 'excluded.deleted_hlc')] : []),
    ...fields.map((f) => newer(held(f.name), incoming(f.name))),
  ];
  const keyCols = model.keyColumns.map((k, i) => `split_part(c.record_key, ':', ${i + 1})::uuid as ${ident(k)}`);
  const join = model.keyColumns.map((k) => `r.${ident(k)} = c.${ident(k)}`).join(' and ');
  return `with c as (
      select c.hlc, c.op, c.fields as f, ${keyCols.join(', ')}
      from jsonb_to_recordset($1::jsonb -> 'changes') as c(hlc text, model text, record_key text, op text, fields jsonb)
      where c.model = ${literal(model.name)}
    ),
    a as (
      select ${keys.map((k) => `c.${k}`).join(', ')},
        max(${C('c.hlc')}) as up,
        max(${C('c.hlc')}) filter (where c.op = 'delete') as del,
        ${perField.join(',\n        ')}
      from c group by ${keys.map((k) => `c.${k}`).join(', ')}
    ),
    lost as (
      select count(*) as n from c join ${t} r on ${join}
      where c.op = 'set' and exists (select 1 from jsonb_object_keys(c.f) k where ${C('r.clocks ->> k')} > ${C('c.hlc')})
    ),
    merged as (
      insert into ${t} (${cols.join(', ')})
      select ${values.join(', ')} from a
      on conflict (${keys.join(', ')}) do update set ${updates.join(', ')}
      where ${changed.join(' or ')}
      returning 1
    )
    select (select count(*) from merged) as applied, (select n from lost) as conflicts`;
}

/** Reads and writes shared records with their field clocks, and this device's change log. */
export class SharedRepository {
  private readonly localState = new LocalStateRepository();

  async load(
    db: DbOrTx,
    model: SharedModel,
    key: Record<string, string>,
    forUpdate = false,
  ): Promise<SharedState | null> {
    const where = sql.join(
      model.keyColumns.map((c) => sql`${sql.ref(c)} = ${key[c]}`),
      sql` and `,
    );
    const lock = forUpdate ? sql`for update` : sql``;
    const res = await sql<
      Record<string, unknown>
    >`select * from ${sql.table(model.table)} where ${where} ${lock}`.execute(db);
    const row = res.rows[0];
    return row ? this.toState(model, row) : null;
  }

  toState(model: SharedModel, row: Record<string, unknown>): SharedState {
    const values: Record<string, unknown> = {};
    for (const f of Object.keys(model.fields)) values[f] = row[f];
    const clocks = typeof row.clocks === 'string' ? JSON.parse(row.clocks) : (row.clocks as Record<string, string>);
    return {
      values,
      clocks,
      deletedHlc: model.deletable ? ((row.deleted_hlc as string | null) ?? null) : null,
      updatedHlc: row.updated_hlc as string,
    };
  }

  async save(db: DbOrTx, model: SharedModel, key: Record<string, string>, state: SharedState): Promise<void> {
    const cols = [
      ...model.keyColumns,
      ...Object.keys(model.fields),
      'clocks',
      'updated_hlc',
      ...(model.deletable ? ['deleted_hlc'] : []),
    ];
    const values = [
      ...model.keyColumns.map((c) => sql`${key[c]}`),
      ...Object.keys(model.fields).map((f) => sql`${state.values[f]}`),
      sql`${JSON.stringify(state.clocks)}::jsonb`,
      sql`${state.updatedHlc}`,
      ...(model.deletable ? [sql`${state.deletedHlc}`] : []),
    ];
    const updates = cols
      .filter((c) => !model.keyColumns.includes(c))
      .map((c) => sql`${sql.ref(c)} = excluded.${sql.ref(c)}`);
    await sql`insert into ${sql.table(model.table)} (${sql.join(cols.map((c) => sql.ref(c)))}) values (${sql.join(values)})
      on conflict (${sql.join(model.keyColumns.map((c) => sql.ref(c)))}) do update set ${sql.join(updates)}`.execute(
      db,
    );
  }

  /** One page of a model's records with their field clocks, in key order: a state transfer. */
  async snapshotPage(
    db: DbOrTx,
    model: SharedModel,
    afterKey: string | null,
    limit: number,
  ): Promise<{ key: string; state: SharedState }[]> {
    const keys = sql.join(model.keyColumns.map((c) => sql.ref(c)));
    const after = afterKey ? afterKey.split(':') : null;
    const cond = after ? sql`(${keys}) > (${sql.join(after.map((v) => sql`${v}::uuid`))})` : sql`true`;
    const res = await sql<
      Record<string, unknown>
    >`select * from ${sql.table(model.table)} where ${cond} order by ${keys} limit ${limit}`.execute(db);
    return res.rows.map((row) => ({
      key: model.keyColumns.map((c) => String(row[c])).join(':'),
      state: this.toState(model, row),
    }));
  }

  async appendChange(db: DbOrTx, change: ChangeLogRow): Promise<void> {
    await db
      .insertInto('shared_changes')
      .values({ ...change, fields: JSON.stringify(change.fields), published: false })
      .execute();
  }

  async unpublished(db: DbOrTx, limit: number): Promise<ChangeLogRow[]> {
    return db
      .selectFrom('shared_changes')
      .select(['hlc', 'model', 'record_key', 'op', 'fields'])
      .where('published', '=', false)
      .orderBy('hlc')
      .limit(limit)
      .execute();
  }

  async markPublished(db: DbOrTx, upTo: string): Promise<void> {
    await db
      .updateTable('shared_changes')
      .set({ published: true })
      .where('published', '=', false)
      .where('hlc', '<=', upTo)
      .execute();
  }

  /** Changes after `after` (exclusive), oldest first: what a peer behind us needs. */
  async changesAfter(db: DbOrTx, after: string | null, limit: number): Promise<ChangeLogRow[]> {
    let q = db
      .selectFrom('shared_changes')
      .select(['hlc', 'model', 'record_key', 'op', 'fields'])
      .orderBy('hlc')
      .limit(limit);
    if (after) q = q.where('hlc', '>', after);
    return q.execute();
  }

  /** Deletes published changes at or below `upTo`; returns how many were removed. */
  async pruneUpTo(db: DbOrTx, upTo: string): Promise<number> {
    return executeTx(db, async (tx) => {
      const gone = await tx
        .deleteFrom('shared_changes')
        .where('published', '=', true)
        .where('hlc', '<=', upTo)
        .returning('hlc')
        .execute();
      if (gone.length === 0) return 0;
      const highest = gone.reduce((m, r) => (r.hlc > m ? r.hlc : m), gone[0].hlc);
      // remembered so that a peer asking for changes below it is told to take a state transfer
      await this.localState.raise(tx, PRUNED_KEY, highest);
      return gone.length;
    });
  }

  /** The highest change ever pruned from our log (null: the log is complete). */
  async prunedUpTo(db: DbOrTx): Promise<string | null> {
    return this.localState.get(db, PRUNED_KEY);
  }

  /** Our newest change (committed), pruned or not. */
  async head(db: DbOrTx): Promise<string | null> {
    const row = await db.selectFrom('shared_changes').select('hlc').orderBy('hlc', 'desc').limit(1).executeTakeFirst();
    return row?.hlc ?? (await this.prunedUpTo(db));
  }

  async logSize(db: DbOrTx): Promise<number> {
    const row = await db
      .selectFrom('shared_changes')
      .select((eb) => eb.fn.countAll<number>().as('n'))
      .executeTakeFirstOrThrow();
    return Number(row.n);
  }

  /** How many changes of our log come after `after` (all of them for null). */
  async countAfter(db: DbOrTx, after: string | null): Promise<number> {
    const r = await sql<{
      n: number;
    }>`select count(*)::int as n from shared_changes where hlc > ${after ?? ''}`.execute(db);
    return r.rows[0].n;
  }

  /** The oldest change still in the log; a peer whose watermark is below it needs a state transfer. */
  async oldest(db: DbOrTx): Promise<string | null> {
    const row = await db.selectFrom('shared_changes').select('hlc').orderBy('hlc').limit(1).executeTakeFirst();
    return row?.hlc ?? null;
  }
}
