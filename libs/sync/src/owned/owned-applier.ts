import { sql, Transaction } from 'kysely';
import type { Database, Db } from '@lib/db';
import type { ClockService } from '../clock/clock.service';
import { RejectedMessageError } from '../errors';
import type { SyncMetrics } from '../metrics';
import { OWNED_MODELS, OwnedModel, ownedModel } from '../models/registry';
import type { DevicesRepository } from '../store/devices.repository';
import type { ChangeSignal } from '../sync.signals';
import type { StateMessage } from '../transport/messages';
import type { OwnedRepository, OwnedRow, Tombstone } from './owned.repository';
import { encodeCursor, TOMBSTONE_KIND } from './cursor';

const CHUNK = 5000;

/** A validated state message with its rows serialised for the upserts (see OwnedApplier.prepare). */
export interface PreparedState {
  msg: StateMessage;
  byModel: Map<string, OwnedRow[]>;
  chunks: { model: OwnedModel; rows: OwnedRow[]; json: string }[];
  tombstones: Tombstone[];
  maxVersion: string;
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
   * Everything about a message that needs no database: validation, and the rows serialised for
   * the upserts. A caller can prepare the next message while the previous one is being written.
   */
  prepare(msg: StateMessage): PreparedState {
    const { byModel, tombstones, maxVersion } = this.validate(msg);
    const chunks: PreparedState['chunks'] = [];
    for (const model of OWNED_MODELS) {
      const rows = byModel.get(model.name) ?? [];
      for (let i = 0; i < rows.length; i += CHUNK) {
        const part = rows.slice(i, i + CHUNK);
        chunks.push({ model, rows: part, json: JSON.stringify(part) });
      }
    }
    return { msg, byModel, chunks, tombstones, maxVersion };
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
    const { msg, byModel, chunks, tombstones, maxVersion } = 'chunks' in message ? message : this.prepare(message);
    this.clock.checkDrift(maxVersion);
    const contiguous = await this.db.transaction().execute(async (tx) => {
      await opts.alsoInTx?.(tx);
      const items = [
        ...[...byModel].flatMap(([model, rows]) => rows.map((r) => ({ model, id: r.id }))),
        ...tombstones.map((t) => ({ model: t.model, id: t.id })),
      ];
      // One statement before the rows: the clock's row locked (until commit; taken before the
      // rows, it queues concurrent applies before they touch any row, so they cannot deadlock)
      // and advanced past the message, our watermark of the owner, the ids the message claims
      // that belong to someone else, and whether the owner has tombstones that could shadow rows.
      // A caller that orders its own commits (beforeCommit) writes disjoint rows and takes the
      // clock last, so that the writes overlap.
      const clockFirst = !opts.beforeCommit;
      const pre = await sql<{
        known: boolean;
        held: string | null;
        foreign: string[];
        shadowed: boolean;
        stamp: string | null;
      }>`select exists (select 1 from devices where id = ${msg.origin}) as known,
        (select state_watermark from devices where id = ${msg.origin}) as held,
        ${this.repo.foreignIdsSql(msg.origin, items)} as foreign,
        ${this.repo.hasTombstonesSql([msg.origin])} as shadowed,
        ${clockFirst ? this.clock.advanceSql(maxVersion) : sql`null`} as stamp`.execute(tx);
      const { known, held, foreign, shadowed, stamp } = pre.rows[0];
      if (stamp) this.clock.advanced(stamp);
      if (foreign.length)
        throw new RejectedMessageError(
          'not_owner',
          `${foreign.join(', ')} belong to another device, not to the sender ${msg.origin}`,
        );
      // What lies at or below our watermark of this owner we hold already, or its delete: a
      // redelivered or overlapping message must not write it again (its tombstone may be
      // collected by now, and the row would come back from the dead).
      const { chunks: fresh, tombstones: freshTombstones } =
        held === null ? { chunks, tombstones } : above(held, chunks, tombstones);
      for (const chunk of fresh) await this.repo.upsert(tx, chunk.model, chunk.rows, true, chunk.json, shadowed);
      await this.repo.applyTombstones(tx, freshTombstones);
      if (opts.beforeCommit) {
        await opts.beforeCommit(tx);
        await this.clock.observe(tx, maxVersion);
      }
      if (!known) await this.devices.ensurePeer(tx, msg.origin);
      const continues = msg.from === null || (held !== null && held >= msg.from);
      if (continues && opts.raiseWatermark !== false) await this.devices.raiseStateWatermark(tx, msg.origin, msg.to);
      return continues;
    });
    this.signal?.notify('received');
    for (const [model, rows] of byModel) this.metrics.applied.inc({ model }, rows.length);
    if (tombstones.length) this.metrics.applied.inc({ model: 'tombstones' }, tombstones.length);
    return contiguous;
  }
}

/** The rows and tombstones of a prepared message whose cursor lies above `held` (chunks reserialised only if cut). */
function above(
  held: string,
  chunks: PreparedState['chunks'],
  tombstones: Tombstone[],
): { chunks: PreparedState['chunks']; tombstones: Tombstone[] } {
  const out: PreparedState['chunks'] = [];
  for (const chunk of chunks) {
    const rows = chunk.rows.filter(
      (r) => encodeCursor({ version: r.version, kind: chunk.model.order, id: r.id }) > held,
    );
    if (rows.length === chunk.rows.length) out.push(chunk);
    else if (rows.length) out.push({ model: chunk.model, rows, json: JSON.stringify(rows) });
  }
  return {
    chunks: out,
    tombstones: tombstones.filter((t) => encodeCursor({ version: t.version, kind: TOMBSTONE_KIND, id: t.id }) > held),
  };
}
