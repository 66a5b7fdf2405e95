import type { Transaction } from 'kysely';
import type { Database, Db } from '@lib/db';
import type { ClockService } from '../clock/clock.service';
import { encodeRecordKey, SharedModel } from '../models/registry';
import type { ChangeSignal } from '../sync.signals';
import { applyChange, initialState, SharedChange, SharedState } from './merge';
import type { SharedRepository } from './shared.repository';

/**
 * The local write path of shared records: stamp, merge, save and append to the change log, all in
 * one transaction. The change log is also the outbox: the publisher sends unpublished rows.
 */
export class SharedWriter {
  constructor(
    private readonly db: Db,
    private readonly clock: ClockService,
    private readonly repo: SharedRepository,
    private readonly signal: ChangeSignal,
  ) {}

  async transact<T>(fn: (w: SharedWrite) => Promise<T>): Promise<T> {
    const result = await this.db.transaction().execute((tx) => fn(new SharedWrite(tx, this.clock, this.repo)));
    this.signal.notify('shared');
    return result;
  }
}

export class SharedWrite {
  constructor(
    readonly tx: Transaction<Database>,
    private readonly clock: ClockService,
    private readonly repo: SharedRepository,
  ) {}

  /** The record with its field clocks, locked for the rest of the transaction, or null. */
  load(model: SharedModel, key: Record<string, string>): Promise<SharedState | null> {
    return this.repo.load(this.tx, model, key, true);
  }

  /** Sets the given fields (others keep their value and clock). */
  set(model: SharedModel, key: Record<string, string>, fields: Record<string, unknown>): Promise<SharedState> {
    return this.write(model, key, 'set', fields);
  }

  delete(model: SharedModel, key: Record<string, string>): Promise<SharedState> {
    return this.write(model, key, 'delete', {});
  }

  private async write(
    model: SharedModel,
    key: Record<string, string>,
    op: SharedChange['op'],
    fields: Record<string, unknown>,
  ): Promise<SharedState> {
    const hlc = await this.clock.stamp(this.tx);
    const current = (await this.repo.load(this.tx, model, key, true)) ?? initialState(model);
    const next = applyChange(current, { hlc, op, fields });
    await this.repo.save(this.tx, model, key, next);
    await this.repo.appendChange(this.tx, {
      hlc,
      model: model.name,
      record_key: encodeRecordKey(model, key),
      op,
      fields,
    });
    return next;
  }
}
