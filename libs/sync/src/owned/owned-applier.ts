import { sql, Transaction } from 'kysely';
import { PREPARED, type Database, type Db, type DbOrTx } from '@lib/db';
import type { ClockService } from '../clock/clock.service';
import { RejectedMessageError } from '../errors';
import type { SyncMetrics } from '../metrics';
import { OWNED_MODELS, OwnedModel, ownedModel } from '../models/registry';
import { decodeCursor, isCursorText } from './cursor';
import type { DevicesRepository } from '../store/devices.repository';
import type { ChangeSignal } from '../sync.signals';
import type { StateMessage } from '../transport/messages';
import type { OwnedRepository, OwnedRow, Tombstone } from './owned.repository';

/**
 * A validated state message (or backfill page) with its JSON text, which the database reads the
 * rows from (see OwnedApplier.prepare and preparePage).
 */
export interface PreparedState {
  msg: StateMessage;
  /** The ids of its rows, by model. */
  ids: Map<string, string[]>;
  /** The models whose rows come as objects (`rows`), and as values in column order (`columns`). */
  rowModels: Set<string>;
  valueModels: Set<string>;
  tombstones: Tombstone[];
  maxVersion: string;
  /** The JSON the database reads the rows from: the message as it came, or a page's. */
  json: string;
  /** A COPY page (backfill): its rows come as COPY text, staged and checked in the database. */
  stage?: { model: OwnedModel; data: Buffer; rows: number };
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
const HLC = /^\d{15}-\d{6}-[0-9a-f-]{36}$/;

/**
 * Applies an owner's broadcast state on a peer: only rows of the message's origin, only when
 * newer than what is held, in one transaction with the clock and the peer's state watermark.
 */
export class OwnedApplier {
  constructor(
    private readonly db: Db,
    private readonly clock: ClockService,
    private readonly repo: OwnedRepository,
    private readonly devices: DevicesRepository,
    private readonly metrics: SyncMetrics,
    private readonly signal?: ChangeSignal,
  ) {}

  /**
   * Throws RejectedMessageError (nothing applied) for a forged or malformed message. Returns the
   * ids of its rows by model, which models come as objects (`rows`) and which as values
   * (`columns`), and the greatest version it carries.
   */
  validate(msg: StateMessage): Omit<PreparedState, 'msg' | 'json'> {
    // COPY text is checked where it is staged (prepare): here it would count as no rows at all
    if (msg.copy) throw new RejectedMessageError('malformed', 'COPY text in a state message checked as values');
    const ids = new Map<string, string[]>();
    const rowModels = new Set<string>();
    let maxVersion = msg.to.split('|')[0];
    msg.rows.forEach(({ model: name, row }, i) => {
      const model = ownedModel(name);
      if (!model) throw new RejectedMessageError('unknown_model', `rows[${i}].model: ${name}`);
      const parsed = model.wire.safeParse(row);
      if (!parsed.success) {
        const issue = parsed.error.issues[0];
        throw new RejectedMessageError('invalid_row', `rows[${i}].${issue.path.join('.')}: ${issue.message}`);
      }
      const r = parsed.data as OwnedRow;
      if (r.device_id !== msg.origin) {
        throw new RejectedMessageError(
          'not_owner',
          `rows[${i}]: ${name} ${r.id} belongs to ${r.device_id}, not to the sender ${msg.origin}`,
        );
      }
      if (r.version > maxVersion) maxVersion = r.version;
      rowModels.add(name);
      const list = ids.get(name);
      if (list) list.push(r.id);
      else ids.set(name, [r.id]);
    });
    const columns = checkColumns(msg.columns ?? [], msg.origin, ids, maxVersion);
    maxVersion = checkTombstones(msg.tombstones, msg.origin, columns.maxVersion);
    return { ids, rowModels, valueModels: columns.models, tombstones: msg.tombstones, maxVersion };
  }

  /**
   * A page of `owner`'s stream after `from` up to `to` (a backfill's or a catch-up's), validated
   * like a message whose rows come as values (see validate). Throws RejectedMessageError for a
   * malformed or forged page.
   */
  preparePage(
    libraryId: string,
    owner: string,
    from: string | null,
    to: string,
    page: { rows: { model: string; values: unknown[][] }[]; tombstones: Tombstone[] },
  ): PreparedState {
    if (!Array.isArray(page.rows) || !Array.isArray(page.tombstones))
      throw new RejectedMessageError('malformed', 'a page without rows or tombstones');
    page.tombstones.forEach((t, i) => {
      if (!UUID.test(String(t?.id)) || !HLC.test(String(t?.version)))
        throw new RejectedMessageError('invalid_row', `tombstones[${i}]: not a tombstone`);
    });
    const msg: StateMessage = {
      v: 1,
      kind: 'state',
      library: libraryId,
      origin: owner,
      from,
      to,
      rows: [],
      columns: page.rows,
      tombstones: page.tombstones,
    };
    return { msg, ...this.validate(msg), json: JSON.stringify({ columns: page.rows, tombstones: page.tombstones }) };
  }

  /**
   * A COPY page of `owner`'s rows of one model up to `page.last` (a backfill's, protocol.ts
   * OwnedCopyPageReply). Its rows are checked in the database when it is applied (stagePage):
   * here only the envelope.
   */
  prepareCopyPage(
    libraryId: string,
    owner: string,
    modelName: string,
    page: { copy: string; rows: number; last: string | null },
  ): PreparedState {
    const model = ownedModel(modelName);
    if (!model) throw new RejectedMessageError('unknown_model', `page of ${modelName}`);
    if (typeof page.copy !== 'string' || !Number.isSafeInteger(page.rows) || page.rows < 1)
      throw new RejectedMessageError('malformed', 'a copy page without rows');
    if (!isCursorText(page.last) || decodeCursor(page.last).kind !== model.order)
      throw new RejectedMessageError('malformed', `a copy page of ${model.name} ending at ${String(page.last)}`);
    const msg: StateMessage = {
      v: 1,
      kind: 'state',
      library: libraryId,
      origin: owner,
      from: null,
      to: page.last,
      rows: [],
      columns: [],
      tombstones: [],
    };
    return staged(msg, model, page.copy, page.rows);
  }

  /**
   * Everything about a message that needs no database: validation, and its JSON (`raw`, the text
   * it arrived as, when given: not serialised again). A caller can prepare the next message while
   * the previous one is being written.
   */
  prepare(msg: StateMessage, raw?: string): PreparedState {
    if (msg.copy) return this.prepareCopyMessage(msg, msg.copy);
    return { msg, ...this.validate(msg), json: raw ?? JSON.stringify(msg) };
  }

  /**
   * A state message whose rows come as COPY text of one model (messages.ts): checked in the
   * database when applied (stagePage), as a backfill's COPY page is; here only the envelope.
   */
  private prepareCopyMessage(msg: StateMessage, copy: NonNullable<StateMessage['copy']>): PreparedState {
    const model = ownedModel(copy.model);
    if (!model) throw new RejectedMessageError('unknown_model', `copy of ${copy.model}`);
    if (msg.rows.length || msg.columns?.length || msg.tombstones.length)
      throw new RejectedMessageError('malformed', 'a state message with both COPY text and other rows');
    return staged(msg, model, copy.data, copy.rows);
  }

  /**
   * Applies the message. Returns whether it continued the origin's stream contiguously (false
   * means a gap: the watermark stays where it was until a catch-up fills it).
   */
  async apply(
    message: StateMessage | PreparedState,
    opts: {
      raiseWatermark?: boolean;
      alsoInTx?: (tx: Transaction<Database>) => Promise<void>;
      /**
       * Runs after the rows are written, before the clock is observed and the transaction commits:
       * a caller writing several messages of one owner at once orders their commits here.
       */
      beforeCommit?: (tx: Transaction<Database>) => Promise<void>;
    } = {},
  ): Promise<boolean> {
    const { msg, ids, rowModels, valueModels, tombstones, maxVersion, json, stage } =
      'json' in message ? message : this.prepare(message);
    this.clock.checkDrift(maxVersion);
    const items = [
      ...[...ids].flatMap(([model, list]) => list.map((id) => ({ model, id }))),
      ...tombstones.map((t) => ({ model: t.model, id: t.id })),
    ];
    const writes = stage
      ? [this.repo.stagedStatement(stage.model)]
      : this.repo.applyStatements(
          OWNED_MODELS.filter((m) => rowModels.has(m.name)),
          OWNED_MODELS.filter((m) => valueModels.has(m.name)),
          new Set(tombstones.map((t) => t.model)),
        );
    const foreign = stage
      ? this.repo.stagedForeignQuery(stage.model, msg.origin)
      : this.repo.foreignIdsQuery(msg.origin, items);
    // One statement (migration apply_state_function): the clock's row locked (until commit; taken
    // before the rows, it queues concurrent applies before they touch any row, so they cannot
    // deadlock) and advanced past the message, the ids checked against other owners, the rows and
    // tombstones above our watermark of the owner written, and the watermark raised. A caller that
    // orders its own commits (beforeCommit) writes disjoint rows and takes the clock last, so that
    // the writes overlap.
    const step = (tx: DbOrTx, clockFirst: boolean) => {
      const clock = clockFirst ? this.clock.advanceArgs(maxVersion) : null;
      return sql<{
        o_stamp: string | null;
        o_continues: boolean;
        o_known: boolean;
      }>`${sql.raw(PREPARED)}select * from sync_apply_state(
        ${msg.origin}::uuid, ${msg.from}::text, ${msg.to}::text, ${opts.raiseWatermark !== false}::boolean,
        ${clock?.wall ?? null}::bigint, ${clock?.node ?? null}::text, ${clock?.floor ?? null}::text, ${clock?.remote ?? null}::text,
        ${foreign}::text, ${writes}::text[], ${json}::jsonb)`.execute(tx);
    };
    let result;
    try {
      if (!opts.alsoInTx && !opts.beforeCommit && !stage) {
        // alone, the statement is its own transaction: one round trip
        result = (await step(this.db, true)).rows[0];
      } else {
        result = await this.db.transaction().execute(async (tx) => {
          await opts.alsoInTx?.(tx);
          if (stage) await this.stage(tx, msg.origin, maxVersion, stage);
          const r = (await step(tx, !opts.beforeCommit)).rows[0];
          if (opts.beforeCommit) {
            await opts.beforeCommit(tx);
            await this.clock.observe(tx, maxVersion);
          }
          return r;
        });
      }
    } catch (e) {
      const code = (e as { code?: unknown }).code;
      // a COPY page whose text does not parse as its columns' types
      if (stage && typeof code === 'string' && code.startsWith('22'))
        throw new RejectedMessageError('invalid_row', `${stage.model.name} page: ${(e as Error).message}`);
      if (code === 'SY001')
        throw new RejectedMessageError(
          'not_owner',
          `${(e as Error).message} belong to another device, not to the sender ${msg.origin}`,
        );
      throw e;
    }
    if (result.o_stamp) this.clock.advanced(result.o_stamp);
    if (!result.o_known || result.o_continues) this.devices.watermarksMoved++;
    const contiguous = result.o_continues;
    this.signal?.notify('received');
    for (const [model, list] of ids) this.metrics.applied.inc({ model }, list.length);
    if (stage) this.metrics.applied.inc({ model: stage.model.name }, stage.rows);
    if (tombstones.length) this.metrics.applied.inc({ model: 'tombstones' }, tombstones.length);
    return contiguous;
  }

  /**
   * Stages a COPY page in `tx` and refuses it (RejectedMessageError, nothing applied) unless every
   * row fits its columns, is the owner's, is not past the page's end, and the count is the one given.
   */
  private async stage(
    tx: DbOrTx,
    owner: string,
    maxVersion: string,
    stage: { model: OwnedModel; data: Buffer; rows: number },
  ): Promise<void> {
    const r = await this.repo.stagePage(tx, stage.model, owner, stage.data);
    const name = stage.model.name;
    if (r.problem) throw new RejectedMessageError('invalid_row', `${name} ${r.problem}`);
    if (r.foreignOwner)
      throw new RejectedMessageError('not_owner', `${name} rows of ${r.foreignOwner} in a page of ${owner}`);
    if (r.rows !== stage.rows)
      throw new RejectedMessageError('malformed', `${name} page: ${r.rows} rows, not ${stage.rows}`);
    if (r.maxVersion !== null && r.maxVersion > maxVersion)
      throw new RejectedMessageError('malformed', `${name} page: a row past the page's end`);
  }
}

/** A message or page whose rows are `rows` lines of COPY text of `model`, up to its `to`: staged when applied. */
function staged(msg: StateMessage, model: OwnedModel, copy: string, rows: number): PreparedState {
  return {
    msg,
    ids: new Map(),
    rowModels: new Set(),
    valueModels: new Set(),
    tombstones: [],
    maxVersion: decodeCursor(msg.to).version,
    json: '{}',
    stage: { model, data: Buffer.from(copy, 'utf8'), rows },
  };
}

/** Checks tombstones' models and owner; returns the greatest version among them and `maxVersion`. */
function checkTombstones(tombstones: readonly Tombstone[], owner: string, maxVersion: string): string {
  tombstones.forEach((t, i) => {
    if (!ownedModel(t.model)) throw new RejectedMessageError('unknown_model', `tombstones[${i}].model: ${t.model}`);
    if (t.device_id !== owner) {
      throw new RejectedMessageError(
        'not_owner',
        `tombstones[${i}]: ${t.model} ${t.id} belongs to ${t.device_id}, not to the sender ${owner}`,
      );
    }
    if (t.version > maxVersion) maxVersion = t.version;
  });
  return maxVersion;
}

/**
 * Checks rows given as values in column order (a message's `columns`, a page's rows): each value
 * against its column, the owner; adds their ids to `ids`. Returns the models present and the
 * greatest version among them and `maxVersion`.
 */
function checkColumns(
  groups: readonly { model: string; values: unknown[][] }[],
  owner: string,
  ids: Map<string, string[]>,
  maxVersion: string,
): { models: Set<string>; maxVersion: string } {
  const models = new Set<string>();
  for (const group of groups) {
    const model = ownedModel(group?.model);
    if (!model) throw new RejectedMessageError('unknown_model', `columns of ${String(group?.model)}`);
    if (!Array.isArray(group.values)) throw new RejectedMessageError('malformed', `columns of ${model.name}`);
    const idAt = model.columns.indexOf('id');
    const ownerAt = model.columns.indexOf('device_id');
    const versionAt = model.columns.indexOf('version');
    const list = ids.get(model.name) ?? [];
    group.values.forEach((values, i) => {
      const problem = model.wire.checkValues(values);
      if (problem) throw new RejectedMessageError('invalid_row', `${model.name} values[${i}].${problem}`);
      if (values[ownerAt] !== owner)
        throw new RejectedMessageError(
          'not_owner',
          `${model.name} ${String(values[idAt])} belongs to ${String(values[ownerAt])}, not to the sender ${owner}`,
        );
      const version = values[versionAt] as string;
      if (version > maxVersion) maxVersion = version;
      list.push(values[idAt] as string);
    });
    ids.set(model.name, list);
    models.add(model.name);
  }
  return { models, maxVersion };
}
