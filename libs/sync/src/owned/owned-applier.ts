import { sql, Transaction } from 'kysely';
import type { Database, Db, DbOrTx } from '@lib/db';
import type { ClockService } from '../clock/clock.service';
import { RejectedMessageError } from '../errors';
import type { SyncMetrics } from '../metrics';
import { OWNED_MODELS, ownedModel } from '../models/registry';
import type { DevicesRepository } from '../store/devices.repository';
import type { ChangeSignal } from '../sync.signals';
import type { StateMessage } from '../transport/messages';
import type { OwnedRepository, OwnedRow, Tombstone } from './owned.repository';

/** A validated state message with its JSON text, which the database reads the rows from (see OwnedApplier.prepare). */
export interface PreparedState {
  msg: StateMessage;
  byModel: Map<string, OwnedRow[]>;
  tombstones: Tombstone[];
  maxVersion: string;
  json: string;
}

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

  /** Throws RejectedMessageError (nothing applied) for a forged or malformed message. */
  validate(msg: StateMessage): { byModel: Map<string, OwnedRow[]>; tombstones: Tombstone[]; maxVersion: string } {
    const byModel = new Map<string, Map<string, OwnedRow>>();
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
      const rows = byModel.get(name) ?? new Map<string, OwnedRow>();
      const prev = rows.get(r.id);
      if (!prev || prev.version < r.version) rows.set(r.id, r);
      byModel.set(name, rows);
    });
    msg.tombstones.forEach((t, i) => {
      if (!ownedModel(t.model)) throw new RejectedMessageError('unknown_model', `tombstones[${i}].model: ${t.model}`);
      if (t.device_id !== msg.origin) {
        throw new RejectedMessageError(
          'not_owner',
          `tombstones[${i}]: ${t.model} ${t.id} belongs to ${t.device_id}, not to the sender ${msg.origin}`,
        );
      }
      if (t.version > maxVersion) maxVersion = t.version;
    });
    return {
      byModel: new Map([...byModel].map(([k, v]) => [k, [...v.values()]])),
      tombstones: msg.tombstones,
      maxVersion,
    };
  }

  /**
   * Everything about a message that needs no database: validation, and its JSON (`raw`, the text
   * it arrived as, when given: not serialised again). A caller can prepare the next message while
   * the previous one is being written.
   */
  prepare(msg: StateMessage, raw?: string): PreparedState {
    const { byModel, tombstones, maxVersion } = this.validate(msg);
    return { msg, byModel, tombstones, maxVersion, json: raw ?? JSON.stringify(msg) };
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
    const { msg, byModel, tombstones, maxVersion, json } = 'json' in message ? message : this.prepare(message);
    this.clock.checkDrift(maxVersion);
    const items = [
      ...[...byModel].flatMap(([model, rows]) => rows.map((r) => ({ model, id: r.id }))),
      ...tombstones.map((t) => ({ model: t.model, id: t.id })),
    ];
    const writes = this.repo.applyStatements(
      OWNED_MODELS.filter((m) => byModel.has(m.name)),
      new Set(tombstones.map((t) => t.model)),
    );
    // One statement (migration apply_state_function): the clock's row locked (until commit; taken
    // before the rows, it queues concurrent applies before they touch any row, so they cannot
    // deadlock) and advanced past the message, the ids checked against other owners, the rows and
    // tombstones above our watermark of the owner written, and the watermark raised. A caller that
    // orders its own commits (beforeCommit) writes disjoint rows and takes the clock last, so that
    // the writes overlap.
    const step = (tx: DbOrTx, clockFirst: boolean) => {
      const clock = clockFirst ? this.clock.advanceArgs(maxVersion) : null;
      return sql<{ o_stamp: string | null; o_continues: boolean; o_known: boolean }>`select * from sync_apply_state(
        ${msg.origin}::uuid, ${msg.from}::text, ${msg.to}::text, ${opts.raiseWatermark !== false}::boolean,
        ${clock?.wall ?? null}::bigint, ${clock?.node ?? null}::text, ${clock?.floor ?? null}::text, ${clock?.remote ?? null}::text,
        ${this.repo.foreignIdsQuery(msg.origin, items)}::text, ${writes}::text[], ${json}::jsonb)`.execute(tx);
    };
    let result;
    try {
      if (!opts.alsoInTx && !opts.beforeCommit) {
        // alone, the statement is its own transaction: one round trip
        result = (await step(this.db, true)).rows[0];
      } else {
        result = await this.db.transaction().execute(async (tx) => {
          await opts.alsoInTx?.(tx);
          const r = (await step(tx, !opts.beforeCommit)).rows[0];
          if (opts.beforeCommit) {
            await opts.beforeCommit(tx);
            await this.clock.observe(tx, maxVersion);
          }
          return r;
        });
      }
    } catch (e) {
      if ((e as { code?: unknown }).code === 'SY001')
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
    for (const [model, rows] of byModel) this.metrics.applied.inc({ model }, rows.length);
    if (tombstones.length) this.metrics.applied.inc({ model: 'tombstones' }, tombstones.length);
    return contiguous;
  }
}
