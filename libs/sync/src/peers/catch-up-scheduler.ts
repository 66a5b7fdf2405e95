import { Logger } from '@nestjs/common';
import type { Db } from '@lib/db';
import type { DevicesRepository } from '../store/devices.repository';
import type { CatchUpService } from './catch-up';

/**
 * Decides when to catch up and with whom: a peer that came online, a gap in an origin's stream, a
 * peer that claims the same changes we lack three heartbeats in a row, or every online peer after
 * the consumer was lost. Catch-ups run one at a time, in the order they were asked for.
 */
export class CatchUpScheduler {
  private readonly logger = new Logger('CatchUp');
  private readonly queue = new Set<string>();
  private readonly ahead = new Map<string, { signature: string; count: number }>();
  /** Origins whose stream showed a gap not yet filled (each logged once). */
  private readonly gaps = new Set<string>();
  /** The catch-ups in progress (null when idle). */
  running: Promise<void> | null = null;
  private stopped = false;

  constructor(
    private readonly db: Db,
    private readonly devices: DevicesRepository,
    private readonly catchUp: CatchUpService,
    private readonly discoverPeers: () => Promise<string[]>,
    /** false while a catch-up makes no sense yet (before start-up, during backfill). */
    private readonly allowed: () => boolean,
  ) {}

  /** Queues a watermark exchange and catch-up with peer. */
  schedule(peer: string): void {
    if (this.stopped || !this.allowed()) return;
    this.queue.add(peer);
    this.running ??= (async () => {
      while (this.queue.size && !this.stopped) {
        const next = this.queue.values().next().value as string;
        this.queue.delete(next);
        try {
          await this.catchUp.catchUpFrom(next);
          for (const k of [...this.gaps]) if (k.endsWith(next)) this.gaps.delete(k);
        } catch (e) {
          this.logger.warn(`catch-up from ${next} failed: ${(e as Error).message}`);
        }
      }
    })().finally(() => (this.running = null));
  }

  /** Catches up from every online peer (after the consumer or the stream was lost). */
  async reconcileAll(): Promise<void> {
    try {
      for (const peer of await this.discoverPeers()) this.schedule(peer);
    } catch (e) {
      this.logger.warn(`reconcile failed: ${(e as Error).message}`);
    }
  }

  /** A peer claiming the same changes we lack for three heartbeats in a row gets a catch-up. */
  peerAhead(id: string, signature: string): void {
    const seen = this.ahead.get(id);
    const count = seen && seen.signature === signature ? seen.count + 1 : 1;
    this.ahead.set(id, { signature, count });
    if (count >= 3) {
      this.ahead.delete(id);
      this.schedule(id);
    }
  }

  /** Origin's stream skipped changes: catch up from it, or from everyone when it is offline. */
  gap(origin: string, kind: 'state' | 'shared'): void {
    if (!this.gaps.has(`${kind}:${origin}`)) this.logger.warn(`gap in the ${kind} stream of ${origin}: catching up`);
    this.gaps.add(`${kind}:${origin}`);
    void this.devices.get(this.db, origin).then((d) => (d?.online ? this.schedule(origin) : this.reconcileAll()));
  }

  async stop(): Promise<void> {
    this.stopped = true;
    await this.running;
  }
}
