import { Logger } from '@nestjs/common';
import type { Db } from '@lib/db';
import type { RejectedMessageError } from '../errors';
import type { SyncMetrics } from '../metrics';
import type { PeerClient } from '../rpc/peer.client';
import { DeadLetterRepository } from '../store/dead-letters.repository';
import { type LibraryTrust, UnknownEpochError } from './library-trust';

const ASK_EVERY_MS = 5000;
const DEAD_LETTERS_PER_MINUTE = 120;

/**
 * Keeps the membership a synced set: when a member's heartbeat shows another membership digest,
 * or a member's message comes sealed under a key epoch we lack (we were offline during a
 * rotation, or its announcement was lost with the stream), asks that member for what it knows
 * and merges it (LibraryTrust.importFrom). Also where refused core messages and replies are
 * counted and dead-lettered (bounded, so a flood from the broker cannot fill the database).
 */
export class TrustSync {
  private readonly logger = new Logger('TrustSync');
  private readonly lastAsked = new Map<string, number>();
  private readonly deadLetters = new DeadLetterRepository();
  private window = { start: 0, recorded: 0 };

  constructor(
    private readonly db: Db,
    private readonly trust: LibraryTrust,
    private readonly peers: PeerClient,
    private readonly metrics: SyncMetrics,
  ) {}

  /** Asks `peer` for the membership, at most every few seconds per peer. */
  askSoon(peer: string): void {
    const now = Date.now();
    if (peer === this.trust.deviceId || now - (this.lastAsked.get(peer) ?? 0) < ASK_EVERY_MS) return;
    this.lastAsked.set(peer, now);
    void this.fetch(peer).catch((e) =>
      this.logger.warn(`cannot get the membership from ${peer}: ${(e as Error).message}`),
    );
  }

  async fetch(peer: string): Promise<void> {
    const before = this.trust.digest();
    await this.trust.importFrom(peer, await this.peers.call(peer, 'membership', {}, 10_000));
    if (this.trust.digest() !== before) this.logger.log(`membership updated from ${peer}`);
  }

  /** A peer's heartbeat carried its membership digest. */
  compare(peer: string, digest: string | undefined): void {
    if (digest && digest !== this.trust.digest()) this.askSoon(peer);
  }

  /** A message refused at the boundary (core NATS, replies): counted, dead-lettered within a budget. */
  refused(subject: string, e: RejectedMessageError, data: Uint8Array): void {
    this.metrics.rejected.inc({ reason: e.reason });
    if (e instanceof UnknownEpochError) this.askSoon(e.signer);
    const now = Date.now();
    if (now - this.window.start > 60_000) this.window = { start: now, recorded: 0 };
    if (++this.window.recorded > DEAD_LETTERS_PER_MINUTE) return;
    this.metrics.deadLettered.inc();
    this.deadLetters
      .record(this.db, {
        subject,
        origin: e instanceof UnknownEpochError ? e.signer : null,
        reason: e.message,
        payload: Buffer.from(data.subarray(0, 64 * 1024)).toString('base64'),
      })
      .catch(() => undefined);
  }
}
