import { Logger } from '@nestjs/common';
import type { Db } from '@lib/db';
import { backfillFromBestPeer } from './backfill/source-choice';
import type { ClockService } from './clock/clock.service';
import { LIVE_BACKLOG } from './inbound/consume-loop';
import type { SyncMetrics } from './metrics';
import type { OwnedRepository } from './owned/owned.repository';
import type { NatsRpcServer } from './rpc/nats-rpc.server';
import type { SharedRepository } from './shared/shared.repository';
import type { DevicesRepository } from './store/devices.repository';
import { assembleEngine, EngineParts } from './sync.assembly';
import type { SyncOptions, SyncPhase } from './sync.options';
import type { ChangeSignal } from './sync.signals';
import { backoffDelay, sleep } from './transport/backoff';
import type { HelloMessage } from './transport/messages';
import type { LibraryTrust } from './trust/library-trust';

/**
 * One device's sync engine: its lifecycle (start, link after every connection, start-up, stop).
 * No roles: every device runs the same parts. Local writes wake the publishers; the consume loop
 * feeds the receiver; presence carries the acks that let the pruner free the log; the catch-up
 * scheduler fills what the stream missed (docs/design.md "Lifecycle of a device").
 */
export class SyncEngine {
  private readonly logger = new Logger('SyncEngine');
  phase: SyncPhase;
  private readonly parts: EngineParts;
  private bootstrapped = false;
  private booting: Promise<void> | null = null;
  private linked = false;
  private stopped = false;
  private readonly abort = new AbortController();
  private readonly unsubscribe: (() => void)[] = [];

  constructor(
    private readonly db: Db,
    private readonly options: SyncOptions,
    clock: ClockService,
    ownedRepo: OwnedRepository,
    sharedRepo: SharedRepository,
    private readonly devices: DevicesRepository,
    private readonly signal: ChangeSignal,
    readonly metrics: SyncMetrics,
    private readonly rpcServer: NatsRpcServer,
    readonly trust: LibraryTrust,
  ) {
    this.phase = !options.enabled ? 'disabled' : trust.removed ? 'removed' : 'uninitialized';
    trust.onEvents({
      removedSelf: (by) => {
        this.logger.warn(`device ${by} removed this device from the library: sync stops, local data stays`);
        void this.halt();
      },
      removed: () => undefined,
    });
    this.parts = assembleEngine(
      { db, options, clock, ownedRepo, sharedRepo, devices, metrics, trust, signal },
      {
        phase: () => this.phase,
        linked: () => this.linked,
        catchUpAllowed: () => !this.stopped && this.bootstrapped && this.phase !== 'backfilling',
        relink: () => {
          this.linked = false;
          void this.link();
        },
      },
    );
  }

  /** The backfill of this process (its progress is reported by /sync/status). */
  get backfill() {
    return this.parts.backfill;
  }

  /** Anti-entropy of this engine (agreement per peer for /sync/status). */
  get antiEntropy() {
    return this.parts.antiEntropy;
  }

  get natsConnected(): boolean {
    return this.parts.transport.connected;
  }

  /** Received messages held back because their clock is too far ahead. */
  get clockDriftHeld(): number {
    return this.parts.receiver.clockDriftHeld;
  }

  async start(): Promise<void> {
    // the range digests' deltas are folded whether or not this device syncs: a device writing with
    // sync off (or removed) would otherwise grow sync_range_deltas without bound
    this.parts.antiEntropy.start();
    if (!this.options.enabled) return;
    if (this.trust.removed) {
      this.logger.warn('this device was removed from the library: it serves its local data and does not sync');
      return;
    }
    // presence from a previous run is stale: a peer's first heartbeat now counts as "came online".
    // Reset before anything is subscribed, so no heartbeat of this run is wiped.
    await this.devices.markAllPeersOffline(this.db);
    this.unsubscribe.push(
      this.signal.on('owned', (rows) => {
        this.parts.presence.headsChanged();
        this.parts.antiEntropy.changed();
        this.parts.ownedPublisher.written(rows);
        this.parts.ownedLoop.wake();
      }),
    );
    this.unsubscribe.push(
      this.signal.on('shared', () => {
        this.parts.presence.headsChanged();
        this.parts.antiEntropy.changed();
        this.parts.sharedLoop.wake();
      }),
    );
    this.parts.presence.start();
    this.parts.pruner.start(this.options.pruneIntervalMs ?? 30_000);
    this.parts.transport.onConnected(() => void this.link());
    this.parts.transport.start();
  }

  /** After every (re)connection: make sure the stream and our consumer exist, then run. */
  private async link(): Promise<void> {
    const transport = this.parts.transport;
    for (let attempt = 0; !this.stopped && transport.connected; attempt++) {
      try {
        await transport.ensureStream();
        const created = await transport.ensureConsumer();
        if (created) this.logger.log('durable consumer (re)created');
        await this.sayHello();
        await this.parts.removal.announceAll();
        this.linked = true;
        this.rpcServer.serve(transport);
        this.parts.invites.serve(transport.connection);
        this.parts.presence.subscribe();
        this.parts.ownedLoop.wake(true);
        this.parts.sharedLoop.wake(true);
        if (!this.bootstrapped) {
          this.bootstrapped = true;
          this.booting = this.bootstrap(created).catch((e) =>
            this.logger.error(`start-up failed: ${(e as Error).stack}`),
          );
        } else if (created) {
          // the consumer was lost with whatever it held: reconcile with every online peer
          void this.parts.catchUps.reconcileAll();
        }
        return;
      } catch (e) {
        const delay = backoffDelay(attempt, 250, 5000);
        this.logger.warn(`cannot set up the stream/consumer yet (${(e as Error).message}); retrying in ${delay} ms`);
        await sleep(delay, this.abort.signal);
      }
    }
  }

  private async sayHello(): Promise<void> {
    const { libraryId, deviceId, deviceName } = this.options;
    const hello: HelloMessage = { v: 1, kind: 'hello', library: libraryId, origin: deviceId, name: deviceName };
    const msgId = `hello:${deviceId}:${Math.floor(Date.now() / 60_000)}`;
    await this.parts.transport.publishLog(
      this.parts.transport.subjects.log('hello', deviceId),
      Buffer.from(JSON.stringify(hello)),
      msgId,
    );
  }

  /**
   * First link of this process: backfill when the database has never been filled, then consume
   * the durable queue (catching_up) until it is drained (ready).
   */
  private async bootstrap(consumerCreated: boolean): Promise<void> {
    const wasFilled = await this.parts.backfill.isFinished();
    if (!wasFilled) {
      this.phase = 'backfilling';
      await backfillFromBestPeer(this.parts.backfill, this.parts.discover, this.abort.signal, async () =>
        (await this.devices.peers(this.db)).some((p) => !p.removed_at),
      );
      if (this.stopped) return;
    }
    this.phase = 'catching_up';
    this.parts.consumer.start();
    // a lost consumer lost what it held: ready only once every online peer was asked
    if (wasFilled && consumerCreated) await this.parts.catchUps.reconcileAll();
    for (let attempt = 0; !this.stopped; attempt++) {
      try {
        const drained =
          this.linked && this.parts.transport.connected && (await this.parts.transport.pending()) <= LIVE_BACKLOG;
        if (this.stopped) return; // removed meanwhile
        if (drained && !this.parts.catchUps.running) {
          this.phase = 'ready';
          this.logger.log('ready');
          return;
        }
      } catch {
        /* not connected: try again */
      }
      await sleep(Math.min(1000, 100 * (attempt + 1)), this.abort.signal);
    }
  }

  /** A single-use invite for a new device (see InviteService). */
  createInvite(ttlSeconds?: number): Promise<{ token: string; expiresAt: string }> {
    return this.parts.invites.create(ttlSeconds);
  }

  /** Removes a device from the library (see PeerRemoval). */
  removePeer(id: string): Promise<void> {
    return this.parts.removal.remove(id);
  }

  /**
   * Announces that this device leaves the library (see PeerRemoval.leave), waiting up to
   * `deadlineMs` for the connection. Throws when the members could not be told.
   */
  async leave(deadlineMs = 5000): Promise<void> {
    if (!this.options.enabled) throw new Error('sync is disabled on this device');
    if (this.trust.removed) return;
    const until = Date.now() + deadlineMs;
    while (!(this.linked && this.parts.transport.connected)) {
      if (this.stopped || Date.now() > until) throw new Error('NATS is not connected');
      await sleep(100, this.abort.signal);
    }
    await this.parts.removal.leave();
  }

  /** Deletes change-log rows every active peer has acknowledged (see Pruner). */
  pruneAcknowledged(): Promise<number> {
    return this.parts.pruner.pruneAcknowledged();
  }

  /** Removed from the library: phase "removed" for good, and sync stops (the HTTP API goes on). */
  private async halt(): Promise<void> {
    this.phase = 'removed';
    await this.stop();
    this.phase = 'removed';
  }

  /** Stops consuming (in-flight messages stay unacknowledged and are redelivered), then closes. */
  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    this.abort.abort();
    for (const u of this.unsubscribe) u();
    this.parts.pruner.stop();
    this.parts.presence.stop();
    this.parts.antiEntropy.stop();
    await Promise.all([this.parts.ownedLoop.stop(), this.parts.sharedLoop.stop()]);
    await this.parts.consumer.stop();
    // closing the connection interrupts catch-up and backfill requests; their progress is committed
    await this.parts.transport.stop();
    await Promise.all([this.parts.catchUps.stop(), this.booting]);
  }
}
