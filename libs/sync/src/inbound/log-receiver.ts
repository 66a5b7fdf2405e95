import { Logger } from '@nestjs/common';
import type { JsMsg } from 'nats';
import type { Db } from '@lib/db';
import { ClockDriftError, RejectedMessageError } from '../errors';
import type { SyncMetrics } from '../metrics';
import type { OwnedApplier } from '../owned/owned-applier';
import type { SharedApplier } from '../shared/shared-applier';
import { DeadLetterRepository } from '../store/dead-letters.repository';
import type { DevicesRepository } from '../store/devices.repository';
import type { RemovedMessage } from '../transport/messages';
import type { Decoded } from './decode';

const DRIFT_RETRY_MS = 10_000;

/** What the receiver tells the rest of the engine. */
export interface ReceiverEvents {
  /** Changes of origin were applied: acknowledge them soon. */
  applied(origin: string): void;
  /** Origin's stream skipped changes we never saw: catch up. */
  gap(origin: string, kind: 'state' | 'shared'): void;
  /** A member announced a removal (and a new key epoch). */
  removed(msg: RemovedMessage): Promise<void>;
}

/**
 * Handles one decoded log message: applied and acked, dead-lettered (terminated), held (clock
 * drift), or left for redelivery after a transient failure.
 */
export class LogReceiver {
  private readonly logger = new Logger('LogReceiver');
  private readonly deadLetters = new DeadLetterRepository();
  /** Received messages held back because their clock is too far ahead (docs/design.md "Clocks"). */
  clockDriftHeld = 0;

  constructor(
    private readonly db: Db,
    private readonly devices: DevicesRepository,
    private readonly owned: OwnedApplier,
    private readonly shared: SharedApplier,
    private readonly metrics: SyncMetrics,
    private readonly deviceId: string,
    private readonly events: ReceiverEvents,
  ) {}

  /** Returns false when the message was left for redelivery after a transient failure. */
  async receive(m: JsMsg, decoded: Decoded): Promise<boolean> {
    if (decoded.kind === 'own') {
      m.ack();
      return true;
    }
    if (decoded.kind === 'rejected') return this.deadLetter(m, decoded.origin, decoded.reason, decoded.raw);
    const { msg, raw } = decoded;
    const started = process.hrtime.bigint();
    try {
      if (msg.kind === 'hello') {
        await this.devices.upsertPeer(this.db, { id: msg.origin, name: msg.name, libraryId: msg.library });
      } else if (msg.kind === 'removed') {
        await this.events.removed(msg);
      } else if (msg.kind === 'state') {
        if (!(await this.owned.apply(decoded.state ?? msg))) this.events.gap(msg.origin, 'state');
        this.events.applied(msg.origin);
      } else {
        if (!(await this.shared.apply(msg, raw))) this.events.gap(msg.origin, 'shared');
        this.events.applied(msg.origin);
      }
      m.ack();
      this.metrics.applySeconds.observe({ kind: msg.kind }, Number(process.hrtime.bigint() - started) / 1e9);
      return true;
    } catch (e) {
      if (e instanceof RejectedMessageError) return this.deadLetter(m, msg.origin, e, raw);
      if (e instanceof ClockDriftError) {
        this.clockDriftHeld++;
        this.metrics.driftHeld.inc();
        this.logger.warn(`holding a message of ${msg.origin}: ${e.message}`);
        m.nak(DRIFT_RETRY_MS);
        return true;
      }
      const sqlState = String((e as { code?: unknown }).code ?? '');
      if (/^2[23]/.test(sqlState)) {
        // a data or integrity error: this message can never apply; retrying would block the queue
        const reason = new RejectedMessageError('invalid_data', `${sqlState}: ${(e as Error).message}`);
        return this.deadLetter(m, msg.origin, reason, raw);
      }
      this.logger.warn(`applying a message of ${msg.origin} failed (${(e as Error).message}); it will be redelivered`);
      m.nak(1000);
      return false;
    }
  }

  private async deadLetter(m: JsMsg, origin: string | null, e: RejectedMessageError, raw: string): Promise<boolean> {
    try {
      await this.deadLetters.record(this.db, { subject: m.subject, origin, reason: e.message, payload: raw });
    } catch (err) {
      // the record could not be written (database down): keep the message for later
      this.logger.warn(`cannot dead-letter yet: ${(err as Error).message}`);
      m.nak(1000);
      return false;
    }
    this.metrics.rejected.inc({ reason: e.reason });
    this.metrics.deadLettered.inc();
    this.logger.warn(`dead-lettered ${m.subject}: ${e.message}`);
    m.term();
    return true;
  }
}
