import { sql, Transaction } from 'kysely';
import type { Database, Db } from '@lib/db';
import type { ClockService } from '../clock/clock.service';
import { decodeHlc } from '../clock/hlc';
import { RejectedMessageError } from '../errors';
import type { SyncMetrics } from '../metrics';
import type { ChangeSignal } from '../sync.signals';
import { decodeRecordKey, SharedModel, sharedModel } from '../models/registry';
import type { DevicesRepository } from '../store/devices.repository';
import type { SharedMessage } from '../transport/messages';
import { applyChange, changes, initialState, mergeStates, SharedChange, SharedState } from './merge';
import type { SharedRepository } from './shared.repository';

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

  /** Applies the changes; returns whether they continue the origin's log contiguously. */
  async apply(msg: SharedMessage): Promise<boolean> {
    const valid = this.validate(msg);
    const last = msg.changes.reduce((m, c) => (c.hlc > m ? c.hlc : m), msg.changes[0].hlc);
    this.clock.checkDrift(last);
    const contiguous = await this.db.transaction().execute(async (tx) => {
      // one statement: the clock locked (until commit) and advanced past the changes, and our
      // watermark of the origin, read before its changes are written
      const pre = await sql<{ stamp: string; known: boolean; held: string | null }>`select
        ${this.clock.advanceSql(last)} as stamp,
        exists (select 1 from devices where id = ${msg.origin}) as known,
        (select shared_watermark from devices where id = ${msg.origin}) as held`.execute(tx);
      const { stamp, known, held } = pre.rows[0];
      this.clock.advanced(stamp);
      for (const { model, key, change } of valid) {
        const state = await this.repo.load(tx, model, key, true);
        if (state && !changes(state, change)) continue;
        if (
          state &&
          change.op === 'set' &&
          Object.entries(change.fields).some(([f]) => (state.clocks[f] ?? '') > change.hlc)
        ) {
          this.metrics.conflicts.inc({ model: model.name });
        }
        const next = applyChange(state ?? initialState(model), change);
        await this.repo.save(tx, model, key, next);
        this.metrics.applied.inc({ model: model.name });
      }
      if (!known) await this.devices.ensurePeer(tx, msg.origin);
      const continues = msg.prev === null || (held !== null && held >= msg.prev);
      if (continues) await this.devices.raiseSharedWatermark(tx, msg.origin, last);
      return continues;
    });
    this.signal?.notify('received');
    return contiguous;
  }
}
