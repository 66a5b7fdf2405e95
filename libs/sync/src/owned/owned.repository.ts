import { CompiledQuery, Kysely, RawBuilder, sql } from 'kysely';
import { copyFrom, copyTo, PREPARED, type Database, type DbOrTx } from '@lib/db';
import { OWNED_MODELS, OwnedModel, ownedModel } from '../models/registry';
import { ident, literal } from '../models/sql-text';
import { decodeCursor, encodeCursor, endOfVersion, OwnedCursor, TOMBSTONE_KIND } from './cursor';

/** One owned row as it travels: snake_case columns, timestamps as ISO-8601 text. */
export type OwnedRow = Record<string, unknown> & { id: string; device_id: string; version: string };

export interface Tombstone {
  model: string;
  id: string;
  device_id: string;
  version: string;
}

/** The pseudo-model name of the tombstone stream in per-model paging. */
export const TOMBSTONES = 'tombstones';

/**
 * Collects tombstones every device has seen past: `horizons` maps an owner to the smallest state
 * watermark (cursor) any active device reported for it.
 */
export async function collectTombstones(db: DbOrTx, horizons: Map<string, string>): Promise<number> {
  let n = 0;
  for (const [owner, cursor] of horizons) {
    // everything at or below the cursor has been seen: compare the whole (version, kind, id)
    const c = decodeCursor(cursor);
    const res = await db
      .deleteFrom('owned_tombstones')
      .where('device_id', '=', owner)
      .where((eb) =>
        c.kind < TOMBSTONE_KIND
          ? eb('version', '<', c.version)
          : eb.or([eb('version', '<', c.version), eb.and([eb('version', '=', c.version), eb('id', '<=', c.id)])]),
      )
      .executeTakeFirst();
    n += Number(res.numDeletedRows ?? 0);
  }
  return n;
}

/** One change of an owner's stream as it travels: its cursor, and its wire JSON (a row's values in column order, or a tombstone). */
export interface OwnedChangeJson {
  type: 'row' | 'tombstone';
  /** The row's model, or TOMBSTONES. */
  model: string;
  cursor: string;
  json: string;
}

/** One element of an owner's change stream, in cursor order. */
export type OwnedChange =
  | { type: 'row'; model: string; row: OwnedRow; cursor: string }
  | { type: 'tombstone'; tombstone: Tombstone; cursor: string };

/**
 * Rows as a relation `x` with the model's columns, sent as one JSON array of each row's values in
 * column order (no column names repeated per row: half the text of objects, and cheaper to read).
 */
function recordset(model: OwnedModel, rows: readonly Record<string, unknown>[]): RawBuilder<unknown> {
  const values = rows.map((r) => model.columns.map((c) => r[c]));
  const cols = model.columns.map((c, i) => sql.raw(`(e.v ->> ${i})::${model.sqlTypes[c]} as ${ident(c)}`));
  return sql`(select ${sql.join(cols)} from jsonb_array_elements(${JSON.stringify(values)}::jsonb) as e(v)) as x`;
}

/** A timestamp column as rows travel: UTC, to the millisecond, formatted by Postgres. */
function wireTimestamp(col: string): RawBuilder<unknown> {
  return sql`to_char(${sql.ref(col)} at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"')`;
}

/**
 * Keeps keyset pages on the (device_id, version, id) index for the rest of the transaction: with
 * stale statistics the planner may instead sort every remaining row for each page.
 */
async function keepKeysetPlan(tx: DbOrTx): Promise<void> {
  await sql`select set_config('enable_bitmapscan', 'off', true), set_config('enable_sort', 'off', true)`.execute(tx);
}

/** The condition of a keyset page after `after` (exclusive), for the source of cursor kind `kind`. */
function pageAfter(after: string | null): (kind: number) => RawBuilder<unknown> {
  const c: OwnedCursor | null = after ? decodeCursor(after) : null;
  return (kind) => {
    if (!c) return sql`true`;
    if (kind < c.kind) return sql`version > ${c.version}`;
    if (kind > c.kind) return sql`version >= ${c.version}`;
    return sql`(version, id) > (${c.version}, ${c.id}::uuid)`;
  };
}

/** json_build_array's arguments for a model's wire row: its values in column order (timestamps as toWire gives them). */
function wireJsonValues(model: OwnedModel): RawBuilder<unknown> {
  return sql.join(
    model.columns.map((col) => (model.timestampColumns.includes(col) ? wireTimestamp(col) : sql.ref(col))),
  );
}

function toWire(model: OwnedModel, row: Record<string, unknown>): OwnedRow {
  const out: Record<string, unknown> = {};
  for (const c of model.columns) {
    const v = row[c];
    out[c] = v instanceof Date ? v.toISOString() : v;
  }
  return out as OwnedRow;
}

/** $1 (the watermark) is below the change at (x.version, kind, x.id): the cursor order, as text. */
const aboveHeld = (kind: number): string =>
  `($1::text is null or (x.version || '|${kind}|' || x.id::text) collate "C" > $1::text collate "C")`;

/** Row x is not shadowed by a delete held: its own (as new or newer), or its cascading parent's. */
function notShadowed(model: OwnedModel): string {
  let cond = `not exists (select 1 from owned_tombstones ts where ts.model = ${literal(model.name)} and ts.id = x.id and ts.device_id = x.device_id and ts.version >= x.version)`;
  if (model.parent?.onDelete === 'cascade')
    cond += ` and not exists (select 1 from owned_tombstones tp where tp.model = ${literal(model.parent.model)} and tp.id = x.${ident(model.parent.column)} and tp.device_id = x.device_id)`;
  return cond;
}

/**
 * The statement that applies a peer's rows of one model (see OwnedRepository.applyStatements):
 * the message's rows of that model, the newest of each id.
 */
function rowsStatement(model: OwnedModel): string {
  const defs = model.columns.map((c) => `${ident(c)} ${model.sqlTypes[c]}`).join(', ');
  return peerUpsert(
    model,
    `jsonb_array_elements($3::jsonb -> 'rows') as e(r), jsonb_to_record(e.r -> 'row') as x(${defs})`,
    `e.r ->> 'model' = ${literal(model.name)} and `,
  );
}

/**
 * The statement that applies a message's rows of one model given as values (see
 * OwnedRepository.applyStatements): $3's `columns` are `[{model, values: [[...], ...]}]`, each row
 * its values in column order (as a state message carries them, and a page: protocol.ts
 * OwnedPageReply), read as they came, the newest of each id.
 */
function valuesStatement(model: OwnedModel): string {
  const fromValues = model.columns.map((c, i) => `(e.v ->> ${i})::${model.sqlTypes[c]} as ${ident(c)}`).join(', ');
  return peerUpsert(
    model,
    `(select ${fromValues}
      from jsonb_array_elements($3::jsonb -> 'columns') as g(grp), jsonb_array_elements(g.grp -> 'values') as e(v)
      where g.grp ->> 'model' = ${literal(model.name)}) as x`,
    '',
  );
}

/**
 * A peer's rows of `model`, the relation x of `from` (filtered by `where`, which ends in "and"
 * when given), upserted: the newest of each id, above the watermark, not shadowed, and only over
 * an older version of the same owner's row.
 */
function peerUpsert(model: OwnedModel, from: string, where: string): string {
  const cols = model.columns.map(ident).join(', ');
  const xcols = model.columns.map((c) => `x.${ident(c)}`).join(', ');
  const updates = model.columns
    .filter((c) => c !== 'id')
    .map((c) => `${ident(c)} = excluded.${ident(c)}`)
    .join(', ');
  const t = ident(model.table);
  return `insert into ${t} (${cols})
    select distinct on (x.id) ${xcols}
    from ${from}
    where ${where}${aboveHeld(model.order)} and (not $2::boolean or (${notShadowed(model)}))
    order by x.id, x.version collate "C" desc
    on conflict (id) do update set ${updates} where ${t}.device_id = excluded.device_id and ${t}.version < excluded.version`;
}

/**
 * The statements that apply a message's tombstones, of the given models (see
 * OwnedRepository.applyStatements): the newest of each record.
 */
function tombstoneStatements(models: ReadonlySet<string>): string[] {
  // every statement takes the same three typed parameters; these do not need $2 (a tombstone
  // always applies), which is named only so that Postgres knows its type
  const x = `jsonb_to_recordset($3::jsonb -> 'tombstones') as x(model text, id uuid, device_id uuid, version text), (select $2::boolean) as s(shadowed)`;
  const out = [
    `insert into owned_tombstones (model, id, device_id, version)
      select distinct on (x.model, x.id) x.model, x.id, x.device_id, x.version from ${x} where ${aboveHeld(TOMBSTONE_KIND)}
      order by x.model, x.id, x.version collate "C" desc
      on conflict (model, id) do update set version = excluded.version
      where owned_tombstones.version < excluded.version and owned_tombstones.device_id = excluded.device_id`,
  ];
  for (const model of OWNED_MODELS.filter((m) => models.has(m.name))) {
    const mine = `x.model = ${literal(model.name)} and ${aboveHeld(TOMBSTONE_KIND)}`;
    out.push(`delete from ${ident(model.table)} r using ${x}
      where ${mine} and r.id = x.id and r.device_id = x.device_id and r.version <= x.version`);
    for (const child of OWNED_MODELS.filter((m) => m.parent?.model === model.name && m.parent.onDelete === 'cascade'))
      out.push(`delete from ${ident(child.table)} c using ${x}
        where ${mine} and c.${ident(child.parent!.column)} = x.id and c.device_id = x.device_id`);
  }
  return out;
}

/**
 * The session's staging table of a model's COPY pages (a backfill's bulk form, see stagePage):
 * its synced columns, typed, and emptied at every commit.
 */
const stageTable = (model: OwnedModel): string => `pg_temp.${ident(`sync_stage_${model.table}`)}`;

/** COPY's column list of a model: its synced columns in wire order (the source's and the stage's). */
const copyColumns = (model: OwnedModel): string => model.columns.map(ident).join(', ');

/** The page condition of pageAfter as SQL text (COPY takes no parameters; a cursor is validated text). */
function pageAfterText(after: string | null, kind: number): string {
  if (!after) return 'true';
  const c = decodeCursor(after);
  if (kind < c.kind) return `version > ${literal(c.version)}`;
  if (kind > c.kind) return `version >= ${literal(c.version)}`;
  return `(version, id) > (${literal(c.version)}, ${literal(c.id)}::uuid)`;
}

/** COPY text in and out in the same form whatever the sessions' settings: ISO timestamps in UTC. */
const COPY_SETTINGS = `set local datestyle = 'ISO, YMD'; set local timezone = 'UTC'`;

/**
 * The session's staging table of `model` (stageTable), created when missing and emptied (it is
 * emptied at commit too), with COPY_SETTINGS for the rest of the transaction.
 */
async function openStage(tx: DbOrTx, model: OwnedModel): Promise<void> {
  const defs = model.columns.map((c) => `${ident(c)} ${model.sqlTypes[c]}`).join(', ');
  await sql
    .raw(
      `${COPY_SETTINGS}; create temp table if not exists ${ident(`sync_stage_${model.table}`)} (${defs}) on commit delete rows; delete from ${stageTable(model)}`,
    )
    .execute(tx);
}

/** A write of at least this many rows goes to Postgres as COPY text rather than as JSON. */
export const COPY_WRITE_MIN_ROWS = 500;

const COPY_ESCAPES: Readonly<Record<string, string>> = { '\\': '\\\\', '\t': '\\t', '\n': '\\n', '\r': '\\r' };

/** One value as COPY text (text format): `\N` for null, backslash escapes for what would cut the row. */
function copyValue(v: unknown): string {
  if (v === null || v === undefined) return '\\N';
  if (typeof v === 'number' || typeof v === 'bigint') return String(v);
  if (typeof v === 'boolean') return v ? 't' : 'f';
  if (v instanceof Date) return v.toISOString();
  const text = String(v);
  return /[\\\t\n\r]/.test(text) ? text.replace(/[\\\t\n\r]/g, (c) => COPY_ESCAPES[c]) : text;
}

/** Rows as COPY text of the model's columns (copyColumns' order). */
function copyRows(model: OwnedModel, rows: readonly Record<string, unknown>[]): Buffer {
  const lines = rows.map((r) => `${model.columns.map((c) => copyValue(r[c])).join('\t')}\n`);
  return Buffer.from(lines.join(''), 'utf8');
}

/**
 * Device-owned rows, their tombstones and the owner's change stream. The rows are the log: an
 * owner's changes after a cursor are simply its rows and tombstones with a greater (version, id).
 */
export class OwnedRepository {
  /**
   * Upserts rows as their owner writes them (or a repair restores them): a row held under another
   * owner is left alone. Returns the number of rows written.
   */
  async upsert(db: DbOrTx, model: OwnedModel, rows: readonly Record<string, unknown>[]): Promise<number> {
    if (rows.length === 0) return 0;
    const cols = sql.join(model.columns.map((c) => sql.ref(c)));
    const xcols = sql.join(model.columns.map((c) => sql.ref(`x.${c}`)));
    const updates = sql.join(
      model.columns.filter((c) => c !== 'id').map((c) => sql`${sql.ref(c)} = excluded.${sql.ref(c)}`),
    );
    const t = sql.table(model.table);
    const res = await sql`${sql.raw(PREPARED)}insert into ${t} (${cols}) select ${xcols} from ${recordset(model, rows)}
      on conflict (id) do update set ${updates} where ${t}.device_id = excluded.device_id`.execute(db);
    return Number(res.numAffectedRows ?? 0);
  }

  /**
   * Applies a peer's rows of one model as a state message does (see applyStatements), above
   * `held` (a cursor) when given; returns the number of rows written.
   */
  async applyRows(
    db: DbOrTx,
    model: OwnedModel,
    rows: readonly Record<string, unknown>[],
    held: string | null = null,
  ): Promise<number> {
    if (rows.length === 0) return 0;
    const payload = JSON.stringify({ rows: rows.map((row) => ({ model: model.name, row })) });
    const res = await db.executeQuery(CompiledQuery.raw(rowsStatement(model), [held, true, payload]));
    return Number(res.numAffectedRows ?? 0);
  }

  /**
   * The writes of an owner's state message, as sync_apply_state runs them (migration
   * apply_functions): each statement gets $1 the peer's watermark of the owner (a cursor, or
   * null), $2 whether the owner has tombstones, $3 the message (its `rows` as objects, its
   * `columns` as values in column order, of the given models, and its `tombstones`). What lies at or below the watermark is skipped: a redelivered or
   * overlapping message must not write it again (its tombstone may be collected by now, and the
   * row would come back from the dead). A row applies only over an older version of the same
   * owner's row, and not when its delete (or its cascading parent's) is held; a tombstone removes
   * the rows it covers and their cascading children.
   */
  applyStatements(
    rowModels: Iterable<OwnedModel>,
    valueModels: Iterable<OwnedModel>,
    tombstoneModels: ReadonlySet<string>,
  ): string[] {
    const writes = [...[...rowModels].map(rowsStatement), ...[...valueModels].map(valuesStatement)];
    if (tombstoneModels.size) writes.push(...tombstoneStatements(tombstoneModels));
    return writes;
  }

  /**
   * A page of owner's rows of `model` after the cursor `after`, at most `limit`, in (version, id)
   * order, as COPY text rows of its synced columns (protocol.ts OwnedCopyPageReply): Postgres
   * formats them, nothing is built row by row here.
   */
  async copyPage(db: DbOrTx, owner: string, model: OwnedModel, after: string | null, limit: number): Promise<Buffer> {
    const read = async (tx: DbOrTx) => {
      await keepKeysetPlan(tx);
      await sql.raw(COPY_SETTINGS).execute(tx);
      return copyTo(
        tx,
        `select ${copyColumns(model)} from ${ident(model.table)}
          where device_id = ${literal(owner)}::uuid and ${pageAfterText(after, model.order)}
          order by version, id limit ${Math.floor(limit)}`,
      );
    };
    return db.isTransaction ? read(db) : (db as Kysely<Database>).transaction().execute(read);
  }

  /**
   * Stages a COPY page of owner's rows of `model` in this transaction (the session's staging
   * table, see stageTable) and checks it as the JSON path checks values: the column types refuse
   * what does not parse (the COPY fails), then every row is checked against its model's column
   * specifications and its owner. Returns how many rows it holds and its greatest version, or a
   * problem (nothing applied; the transaction is the caller's to roll back).
   */
  async stagePage(
    tx: DbOrTx,
    model: OwnedModel,
    owner: string,
    data: Buffer,
  ): Promise<{ rows: number; maxVersion: string | null; foreignOwner: string | null; problem: string | null }> {
    await openStage(tx, model);
    const rows = await copyFrom(tx, `${stageTable(model)} (${copyColumns(model)})`, data);
    const r = await sql<{ max_version: string | null; foreign_owner: string | null; problem: string | null }>`
      select max(x.version collate "C") as max_version,
        min(x.device_id::text) filter (where x.device_id is distinct from ${owner}::uuid) as foreign_owner,
        (array_agg(coalesce(x.id::text, 'a row') || ' ' || x.p) filter (where x.p is not null))[1] as problem
      from (select s.id, s.device_id, s.version, ${sql.raw(model.wire.sqlProblem('s'))} as p
        from ${sql.raw(stageTable(model))} s) x`.execute(tx);
    const { max_version, foreign_owner, problem } = r.rows[0];
    return { rows, maxVersion: max_version, foreignOwner: foreign_owner, problem };
  }

  /** The write of a staged page (stagePage), as sync_apply_state runs it (see applyStatements). */
  stagedStatement(model: OwnedModel): string {
    return peerUpsert(model, `${stageTable(model)} as x`, '');
  }

  /** foreignIdsQuery for a staged page: the staged ids held here under another owner. */
  stagedForeignQuery(model: OwnedModel, owner: string): string {
    const o = `${literal(owner)}::uuid`;
    return `select array(select f from (
      select ${literal(model.name)} || ' ' || r.id from ${ident(model.table)} r join ${stageTable(model)} s on s.id = r.id where r.device_id <> ${o}
      union all select ${literal(model.name)} || ' ' || t.id from owned_tombstones t join ${stageTable(model)} s on s.id = t.id
        where t.model = ${literal(model.name)} and t.device_id <> ${o}) as f(f) limit 5)`;
  }

  /**
   * Inserts the rows whose id is free and was never deleted (nothing else is touched); returns how
   * many were inserted.
   */
  async insertNew(db: DbOrTx, model: OwnedModel, rows: readonly Record<string, unknown>[]): Promise<number> {
    if (rows.length === 0) return 0;
    if (rows.length >= COPY_WRITE_MIN_ROWS && db.isTransaction) {
      // many rows: staged with COPY (cheaper for Postgres to read than JSON), inserted from there
      await openStage(db, model);
      await copyFrom(db, `${stageTable(model)} (${copyColumns(model)})`, copyRows(model, rows));
      const cols = model.columns.map(ident).join(', ');
      const res = await sql`insert into ${sql.table(model.table)} (${sql.raw(cols)})
        select ${sql.raw(model.columns.map((c) => `x.${ident(c)}`).join(', '))} from ${sql.raw(stageTable(model))} x
        where not exists (select 1 from owned_tombstones t where t.model = ${model.name} and t.id = x.id)
        on conflict (id) do nothing`.execute(db);
      return Number(res.numAffectedRows ?? 0);
    }
    const cols = sql.join(model.columns.map((c) => sql.ref(c)));
    const xcols = sql.join(model.columns.map((c) => sql.ref(`x.${c}`)));
    const res = await sql`${sql.raw(PREPARED)}insert into ${sql.table(model.table)} (${cols}) select ${xcols}
      from ${recordset(model, rows)}
      where not exists (select 1 from owned_tombstones t where t.model = ${model.name} and t.id = x.id)
      on conflict (id) do nothing`.execute(db);
    return Number(res.numAffectedRows ?? 0);
  }

  /**
   * Records deletes as their owner makes them: the tombstones, the rows (if not newer) and what
   * goes with them (a location's entries), with the statements a peer applies them with. Returns
   * how many tombstones were new or newer.
   */
  async applyTombstones(db: DbOrTx, tombstones: readonly Tombstone[]): Promise<number> {
    if (tombstones.length === 0) return 0;
    const writes = this.applyStatements([], [], new Set(tombstones.map((t) => t.model)));
    const payload = JSON.stringify({ tombstones });
    let recorded = 0;
    for (const [i, text] of writes.entries()) {
      const res = await db.executeQuery(CompiledQuery.raw(text, [null, false, payload]));
      if (i === 0) recorded = Number(res.numAffectedRows ?? 0);
    }
    return recorded;
  }

  /**
   * A query for the ids among rows/tombstones that this device already holds under another owner
   * (a message claiming them is forged: ids are never shared between owners): text[], at most 5
   * "model id". Null when there is nothing to check. Ids and owner are validated uuids.
   */
  foreignIdsQuery(owner: string, items: readonly { model: string; id: string }[]): string | null {
    const branches: string[] = [];
    for (const model of OWNED_MODELS) {
      const ids = [...new Set(items.filter((i) => i.model === model.name).map((i) => i.id))];
      if (ids.length === 0) continue;
      const list = `(select jsonb_array_elements_text(${literal(JSON.stringify(ids))}::jsonb)::uuid)`;
      branches.push(`select ${literal(model.name)} || ' ' || id from ${ident(model.table)}
        where id in ${list} and device_id <> ${literal(owner)}::uuid
        union all select ${literal(model.name)} || ' ' || id from owned_tombstones
        where model = ${literal(model.name)} and id in ${list} and device_id <> ${literal(owner)}::uuid`);
    }
    if (branches.length === 0) return null;
    return `select array(select f from (${branches.join(' union all ')}) as f(f) limit 5)`;
  }

  async isTombstoned(db: DbOrTx, model: string, id: string): Promise<boolean> {
    const row = await db
      .selectFrom('owned_tombstones')
      .select('id')
      .where('model', '=', model)
      .where('id', '=', id)
      .executeTakeFirst();
    return !!row;
  }

  /**
   * An owner's changes after `after` (exclusive) in cursor order: rows of every owned model and
   * tombstones, at most `limit`. Each source is read with a keyset query and the pages are merged.
   * `only` restricts it to one model (or TOMBSTONES): a backfill pulls model by model.
   */
  async changesAfter(
    db: DbOrTx,
    owner: string,
    after: string | null,
    limit: number,
    only?: string,
  ): Promise<OwnedChange[]> {
    // the page the publisher and the page server read (changesAfterJson), as objects
    const changes = await this.changesAfterJson(db, owner, after, limit, !db.isTransaction, only);
    return changes.map((c): OwnedChange => {
      if (c.type === 'tombstone')
        return { type: 'tombstone', tombstone: JSON.parse(c.json) as Tombstone, cursor: c.cursor };
      const model = this.modelOf(c.model);
      const values = JSON.parse(c.json) as unknown[];
      const row: Record<string, unknown> = {};
      model.columns.forEach((col, i) => (row[col] = values[i]));
      return { type: 'row', model: c.model, row: row as OwnedRow, cursor: c.cursor };
    });
  }

  /**
   * The page changesAfter reads, each change as its wire JSON text built by Postgres (what the
   * publisher sends as is: no row objects, no serialising here), in one statement: one snapshot
   * and one round trip. `planHints`: inside a transaction that keeps the planner on the keyset
   * index (a backlog far from the head, where stale statistics could make it sort every row);
   * without, for a drain near the head (a few rows), the statement runs alone.
   */
  async changesAfterJson(
    db: DbOrTx,
    owner: string,
    after: string | null,
    limit: number,
    planHints: boolean,
    /** Only this model's rows (or TOMBSTONES): a backfill pulls model by model. */
    only?: string,
  ): Promise<OwnedChangeJson[]> {
    if (planHints && !db.isTransaction)
      return (db as Kysely<Database>).transaction().execute(async (tx) => {
        await keepKeysetPlan(tx);
        return this.changesAfterJson(tx, owner, after, limit, false, only);
      });
    const pageCond = pageAfter(after);
    // near the head, alone, the statement is prepared (one text per cursor kind); never under the
    // backlog's planner settings, which a kept plan would carry over
    const prepare = !db.isTransaction;
    const branches = OWNED_MODELS.filter((m) => !only || m.name === only).map(
      (model) => sql`(select ${sql.lit(model.order)}::int as k, version, id::text as id,
        json_build_array(${wireJsonValues(model)})::text as j
        from ${sql.table(model.table)} where device_id = ${owner} and ${pageCond(model.order)} order by version, id limit ${limit})`,
    );
    if (!only || only === TOMBSTONES)
      branches.push(sql`(select ${sql.lit(TOMBSTONE_KIND)}::int as k, version, id::text as id,
      json_build_object('model', model, 'id', id, 'device_id', device_id, 'version', version)::text as j
      from owned_tombstones where device_id = ${owner} and ${pageCond(TOMBSTONE_KIND)} order by version, id limit ${limit})`);
    const res = await sql<{
      k: number;
      version: string;
      id: string;
      j: string;
    }>`${sql.raw(prepare ? PREPARED : '')}${sql.join(branches, sql` union all `)}`.execute(db);
    const out: OwnedChangeJson[] = res.rows.map((r) => ({
      type: r.k === TOMBSTONE_KIND ? 'tombstone' : 'row',
      model: r.k === TOMBSTONE_KIND ? TOMBSTONES : OWNED_MODELS.find((m) => m.order === r.k)!.name,
      cursor: encodeCursor({ version: r.version, kind: r.k, id: r.id }),
      json: r.j,
    }));
    out.sort((a, b) => (a.cursor < b.cursor ? -1 : a.cursor > b.cursor ? 1 : 0));
    return out.slice(0, limit);
  }

  /**
   * The keys of owner's changes after `after` (exclusive), at most `limit`, in cursor order: those
   * changesAfterJson would return, without their rows. Inside the caller's transaction (a
   * publisher reads the rows next, in the same snapshot).
   */
  async changeKeysAfter(tx: DbOrTx, owner: string, after: string | null, limit: number): Promise<OwnedCursor[]> {
    await keepKeysetPlan(tx);
    const pageCond = pageAfter(after);
    const branches = [
      ...OWNED_MODELS.map((m) => ({ kind: m.order, table: m.table })),
      { kind: TOMBSTONE_KIND, table: 'owned_tombstones' },
    ].map(
      ({ kind, table }) => sql`(select ${sql.lit(kind)}::int as k, version, id::text as id from ${sql.table(table)}
        where device_id = ${owner} and ${pageCond(kind)} order by version, id limit ${limit})`,
    );
    const res = await sql<{ k: number; version: string; id: string }>`${sql.join(branches, sql` union all `)}`.execute(
      tx,
    );
    const keys = res.rows.map((r) => ({
      version: r.version,
      kind: r.k,
      id: r.id,
      cursor: encodeCursor({ version: r.version, kind: r.k, id: r.id }),
    }));
    keys.sort((a, b) => (a.cursor < b.cursor ? -1 : a.cursor > b.cursor ? 1 : 0));
    return keys.slice(0, limit).map(({ version, kind, id }) => ({ version, kind, id }));
  }

  /** How many of owner's rows and tombstones changed after `version` (a peer's pending count). */
  async countChangesAfter(db: DbOrTx, owner: string, version: string): Promise<number> {
    let total = 0;
    for (const table of [...OWNED_MODELS.map((m) => m.table), 'owned_tombstones']) {
      const r = await sql<{
        n: number;
      }>`select count(*)::int as n from ${sql.table(table)} where device_id = ${owner} and version > ${version}`.execute(
        db,
      );
      total += r.rows[0].n;
    }
    return total;
  }

  /**
   * The head of an owner's stream as held here: the end of its newest version among its rows and
   * tombstones (every change at or below it is committed here), or null when we hold none.
   */
  async streamHead(db: DbOrTx, owner: string): Promise<string | null> {
    let maxVersion: string | null = null;
    for (const table of [...OWNED_MODELS.map((m) => m.table), 'owned_tombstones'] as const) {
      const r = await db
        .selectFrom(table)
        .select((eb) => eb.fn.max('version').as('v'))
        .where('device_id', '=', owner)
        .executeTakeFirstOrThrow();
      if (r.v && (!maxVersion || r.v > maxVersion)) maxVersion = r.v as string;
    }
    return maxVersion ? endOfVersion(maxVersion) : null;
  }

  /** Rows held of every owned model, by owner: owner → model → rows. */
  async rowCounts(db: DbOrTx): Promise<Record<string, Record<string, number>>> {
    const counts: Record<string, Record<string, number>> = {};
    for (const m of OWNED_MODELS) {
      const byOwner = await db
        .selectFrom(m.table)
        .select((eb) => ['device_id', eb.fn.countAll<number>().as('n')])
        .groupBy('device_id')
        .execute();
      for (const r of byOwner) (counts[r.device_id] ??= {})[m.name] = Number(r.n);
    }
    return counts;
  }

  /** Reads one row (any owner) in wire form, optionally locking it. */
  async find(db: DbOrTx, model: OwnedModel, id: string, forUpdate = false): Promise<OwnedRow | null> {
    const lock = forUpdate ? sql`for update` : sql``;
    const res = await sql<
      Record<string, unknown>
    >`select * from ${sql.table(model.table)} where id = ${id} ${lock}`.execute(db);
    return res.rows[0] ? toWire(model, res.rows[0]) : null;
  }

  modelOf(name: string): OwnedModel {
    const m = ownedModel(name);
    if (!m) throw new Error(`not an owned model: ${name}`);
    return m;
  }
}
