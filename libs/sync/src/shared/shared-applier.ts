import { sql, Transaction } from 'kysely';
import { PREPARED, type Database, type Db } from '@lib/db';
import type { ClockService } from '../clock/clock.service';
import { decodeHlc } from '../clock/hlc';
import { RejectedMessageError } from '../errors';
import type { SyncMetrics } from '../metrics';
import type { ChangeSignal } from '../sync.signals';
import { decodeRecordKey, SharedModel, sharedModel } from '../models/registry';
import type { DevicesRepository } from '../store/devices.repository';
import type { SharedMessage } from '../transport/messages';
import { initialState, mergeStates, SharedChange, SharedState } from './merge';
import { mergeStatement, type SharedRepository } from './shared.repository';

interface ValidChange {
  model: SharedModel;
  key: Record<string, string>;
  change: SharedChange;
}

/** Merges an origin's shared changes field by field, in one transaction with the clock. */
export class SharedApplier {
  constructor(
    private readonly db: Db,
    private readonly clock: ClockService,
    private readonly repo: SharedRepository,
    private readonly devices: DevicesRepository,
    private readonly metrics: SyncMetrics,
    private readonly signal?: ChangeSignal,
  ) {}

  /** Throws RejectedMessageError (nothing applied) for a forged or malformed change. */
  validate(msg: SharedMessage): ValidChange[] {
    return msg.changes.map((c, i) => {
      const model = sharedModel(c.model);
      if (!model) throw new RejectedMessageError('unknown_model', `changes[${i}].model: ${c.model}`);
      const key = decodeRecordKey(model, c.record_key);
      if (!key) throw new RejectedMessageError('invalid_key', `changes[${i}].record_key: ${c.record_key}`);
      // a stamp names the device that issued it: a change stamped by another device is forged
      if (decodeHlc(c.hlc).node !== msg.origin) {
        throw new RejectedMessageError(
          'not_origin',
          `changes[${i}].hlc: stamped by ${decodeHlc(c.hlc).node}, sent by ${msg.origin}`,
        );
      }
      if (c.op === 'delete' && !model.deletable)
        throw new RejectedMessageError('invalid_op', `changes[${i}].op: ${c.model} cannot be deleted`);
      for (const [field, value] of Object.entries(c.fields)) {
        const spec = model.fields[field];
        if (!spec)
          throw new RejectedMessageError('invalid_field', `changes[${i}].fields.${field}: not a field of ${c.model}`);
        const ok = spec.schema.safeParse(value);
        if (!ok.success)
          throw new RejectedMessageError(
            'invalid_field',
            `changes[${i}].fields.${field}: ${ok.error.issues[0].message}`,
          );
      }
      return { model, key, change: { hlc: c.hlc, op: c.op, fields: c.fields } };
    });
  }

  /** Merges a page of a state transfer (records with their field clocks) into ours. */
  async mergeSnapshot(
    model: SharedModel,
    records: { key: string; state: SharedState }[],
    alsoInTx?: (tx: Transaction<Database>) => Promise<void>,
  ): Promise<number> {
    const valid = records.map((r, i) => {
      const key = decodeRecordKey(model, r.key);
      if (!key) throw new RejectedMessageError('invalid_key', `records[${i}].key: ${r.key}`);
      for (const [field, value] of Object.entries(r.state.values)) {
        const spec = model.fields[field];
        if (!spec || !spec.schema.safeParse(value).success)
          throw new RejectedMessageError('invalid_field', `records[${i}].values.${field}`);
      }
      return { key, state: r.state };
    });
    const newest = records.reduce((m, r) => (r.state.updatedHlc > m ? r.state.updatedHlc : m), '');
    if (newest) this.clock.checkDrift(newest);
    let changed = 0;
    await this.db.transaction().execute(async (tx) => {
      await alsoInTx?.(tx);
      if (newest) await this.clock.observe(tx, newest);
      for (const { key, state } of valid) {
        const current = await this.repo.load(tx, model, key, true);
        const next = current ? mergeStates(current, state) : mergeStates(initialState(model), state);
        if (current && JSON.stringify(next) === JSON.stringify(current)) continue;
        await this.repo.save(tx, model, key, next);
        changed++;
      }
    });
    if (changed) this.signal?.notify('received');
    this.metrics.applied.inc({ model: model.name }, changed);
    return changed;
  }

  /**
   * Applies the changes (`raw`: the message's JSON text as it arrived, when there is one);
   * returns whether they continue the origin's log contiguously. One
   * statement (sync_apply_shared, migration apply_functions): the clock locked (until commit) and
   * advanced past the changes, each model's changes merged field by field by one statement
   * (mergeStatement: merge.ts's rules in SQL), an unknown origin recorded, and our watermark of the
   * origin raised when they continue its log. Alone, it is its own transaction: one round trip.
   */
  async apply(msg: SharedMessage, raw?: string): Promise<boolean> {
    const valid = this.validate(msg);
    const last = msg.changes.reduce((m, c) => (c.hlc > m ? c.hlc : m), msg.changes[0].hlc);
    this.clock.checkDrift(last);
    const models = [...new Set(valid.map((v) => v.model))];
    const writes = models.map((m) => mergeStatement(m));
    const clock = this.clock.advanceArgs(last);
    const res = await sql<{
      o_stamp: string;
      o_continues: boolean;
      o_known: boolean;
      o_applied: string[];
      o_conflicts: string[];
    }>`${sql.raw(PREPARED)}select * from sync_apply_shared(${msg.origin}::uuid, ${msg.prev}::text, ${last}::text,
      ${clock.wall}::bigint, ${clock.node}::text, ${clock.floor}::text, ${writes}::text[], ${raw ?? JSON.stringify(msg)}::jsonb)`.execute(
      this.db,
    );
    const r = res.rows[0];
    this.clock.advanced(r.o_stamp);
    if (!r.o_known || r.o_continues) this.devices.watermarksMoved++;
    models.forEach((model, i) => {
      this.metrics.applied.inc({ model: model.name }, Number(r.o_applied[i]));
      const lost = Number(r.o_conflicts[i]);
      if (lost) this.metrics.conflicts.inc({ model: model.name }, lost);
    });
    this.signal?.notify('received');
    return r.o_continues;
  }
}
