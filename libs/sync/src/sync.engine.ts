import { Logger } from '@nestjs/common';
import type { JsMsg } from 'nats';
import type { Db } from '@lib/db';
import type { ClockService } from './clock/clock.service';
import { ClockDriftError, InvalidInputError, NotFoundError, RejectedMessageError } from './errors';
import type { SyncMetrics } from './metrics';
import { OwnedApplier, PreparedState } from './owned/owned-applier';
import { OwnedPublisher } from './owned/owned-publisher';
import type { OwnedRepository } from './owned/owned.repository';
import type { DevicesRepository } from './peers/devices.repository';
import { PresenceService } from './peers/presence';
import { CatchUpService } from './peers/catch-up';
import type { NatsRpcServer } from './rpc/nats-rpc.server';
import { PeerClient } from './rpc/peer.client';
import type { WatermarksReply } from './rpc/protocol';
import { BackfillService } from './backfill/backfill';
import { collectTombstones } from './owned/owned.repository';
import { SharedApplier } from './shared/shared-applier';
import { SharedPublisher } from './shared/shared-publisher';
import type { SharedRepository } from './shared/shared.repository';
import type { SyncOptions, SyncPhase } from './sync.options';
import type { ChangeSignal } from './sync.signals';
import { backoffDelay, sleep } from './transport/backoff';
import { DeadLetterRepository } from './transport/dead-letter.repository';
import { isNotFound, JetStreamTransport } from './transport/jetstream.transport';
import { LocalStateRepository } from './transport/local-state.repository';
import { describeZodError, HelloMessage, LogMessage, RemovedMessage } from './transport/messages';
import { PublishLoop } from './transport/publisher';
import { LibrarySubjects } from './transport/subjects';

const FETCH_BATCH = 128;
const FETCH_EXPIRES_MS = 1000;

/** A log message after decode(): ours (skipped), refused (dead-lettered), or to apply. */
type Decoded =
  | { kind: 'own' }
  | { kind: 'rejected'; origin: string | null; reason: RejectedMessageError; raw: string }
  | { kind: 'message'; msg: LogMessage; raw: string; state: PreparedState | null };
const DRIFT_RETRY_MS = 10_000;

/**
 * One device's sync engine. No roles: every device runs the same loops. Local writes wake the
 * publishers; the durable consumer feeds the appliers; presence carries acks that prune the log.
 */
export class SyncEngine {
  private readonly logger = new Logger('SyncEngine');
  phase: SyncPhase;
  /** Received messages held back because their clock is too far ahead (DESIGN.md "Clocks"). */
  clockDriftHeld = 0;
  /** Origins whose stream showed a gap since start (filled by a catch-up). */
  readonly gaps = new Set<string>();
  private transport: JetStreamTransport | null = null;
  private peerClient: PeerClient | null = null;
  private catchUp: CatchUpService | null = null;
  backfill: BackfillService | null = null;
  private bootstrapped = false;
  private booting: Promise<void> | null = null;
  private readonly catchUpQueue = new Set<string>();
  private catchUpRunning: Promise<void> | null = null;
  private readonly ahead = new Map<string, { signature: string; count: number }>();
  private presence: PresenceService | null = null;
  private ownedLoop: PublishLoop | null = null;
  private sharedLoop: PublishLoop | null = null;
  private consuming: Promise<void> | null = null;
  private pruneTimer: NodeJS.Timeout | null = null;
  private pruneRunning = false;
  private linked = false;
  private stopped = false;
  private readonly abort = new AbortController();
  private readonly unsubscribe: (() => void)[] = [];
  private readonly state = new LocalStateRepository();
  private readonly deadLetters = new DeadLetterRepository();
  private readonly ownedApplier: OwnedApplier;
  private readonly sharedApplier: SharedApplier;

  constructor(
    private readonly db: Db,
    private readonly options: SyncOptions,
    private readonly clock: ClockService,
    private readonly ownedRepo: OwnedRepository,
    private readonly sharedRepo: SharedRepository,
    private readonly devices: DevicesRepository,
    private readonly signal: ChangeSignal,
    readonly metrics: SyncMetrics,
    private readonly rpcServer: NatsRpcServer,
  ) {
    this.phase = options.enabled ? 'uninitialized' : 'disabled';
    this.ownedApplier = new OwnedApplier(db, clock, ownedRepo, devices, metrics);
    this.sharedApplier = new SharedApplier(db, clock, sharedRepo, devices, metrics);
  }

  get natsConnected(): boolean {
    return this.transport?.connected ?? false;
  }

  async start(): Promise<void> {
    if (!this.options.enabled) return;
    const o = this.options;
    // presence from a previous run is stale: a peer's first heartbeat now counts as "came online".
    // Reset before anything is subscribed, so no heartbeat of this run is wiped.
    await this.devices.markAllPeersOffline(this.db);
    const subjects = new LibrarySubjects(o.libraryId);
    const transport = (this.transport = new JetStreamTransport(
      o.natsServers,
      `${o.deviceName} (${o.deviceId})`,
      subjects,
      o.deviceId,
    ));
    const ready = () => transport.connected && this.linked;
    const failed = () => this.metrics.publishFailures.inc();
    const owned = new OwnedPublisher(
      this.db,
      this.ownedRepo,
      this.state,
      transport,
      this.metrics,
      o.deviceId,
      o.libraryId,
    );
    const shared = new SharedPublisher(
      this.db,
      this.sharedRepo,
      this.state,
      transport,
      this.metrics,
      o.deviceId,
      o.libraryId,
    );
    this.ownedLoop = new PublishLoop('OwnedPublisher', o.batchWindowMs ?? 100, () => owned.drainOnce(), ready, failed);
    this.sharedLoop = new PublishLoop(
      'SharedPublisher',
      o.batchWindowMs ?? 100,
      () => shared.drainOnce(),
      ready,
      failed,
    );
    this.unsubscribe.push(this.signal.on('owned', () => this.ownedLoop?.wake()));
    this.unsubscribe.push(this.signal.on('shared', () => this.sharedLoop?.wake()));
    const self = { id: o.deviceId, name: o.deviceName, libraryId: o.libraryId };
    const peers = (this.peerClient = new PeerClient(transport));
    this.catchUp = new CatchUpService(this.db, peers, this.devices, this.ownedApplier, this.sharedApplier, self);
    this.backfill = new BackfillService(
      this.db,
      peers,
      this.catchUp,
      this.ownedApplier,
      this.devices,
      self,
      o.backfillPauseMs ?? 0,
      o.backfillWriters ?? 2,
    );
    this.presence = new PresenceService(
      this.db,
      this.devices,
      transport,
      this.clock,
      this.metrics,
      { id: o.deviceId, name: o.deviceName, libraryId: o.libraryId },
      o.heartbeatIntervalMs ?? 2000,
      () => this.phase,
      async () => ({
        ownedHead: await this.ownedRepo.streamHead(this.db, o.deviceId),
        sharedHead: await this.sharedRepo.head(this.db),
      }),
      {
        peerOnline: (id) => this.scheduleCatchUp(id),
        acknowledged: () => void this.pruneAcknowledged(),
        peerAhead: (id, signature) => this.notePeerAhead(id, signature),
      },
    );
    this.presence.start();
    this.pruneTimer = setInterval(() => void this.pruneAcknowledged(), o.pruneIntervalMs ?? 5000);
    transport.onConnected(() => void this.link());
    transport.start();
  }

  /** After every (re)connection: make sure the stream and our consumer exist, then run. */
  private async link(): Promise<void> {
    const transport = this.transport!;
    for (let attempt = 0; !this.stopped && transport.connected; attempt++) {
      try {
        await transport.ensureStream();
        const created = await transport.ensureConsumer();
        if (created) this.logger.log('durable consumer (re)created');
        const hello: HelloMessage = {
          v: 1,
          kind: 'hello',
          library: this.options.libraryId,
          origin: this.options.deviceId,
          name: this.options.deviceName,
        };
        await transport.publishLog(
          transport.subjects.log('hello', this.options.deviceId),
          Buffer.from(JSON.stringify(hello)),
          `hello:${this.options.deviceId}:${Math.floor(Date.now() / 60_000)}`,
        );
        for (const id of await this.devices.removed(this.db)) await this.announceRemoval(id);
        this.linked = true;
        this.rpcServer.serve(transport);
        this.presence?.subscribe();
        this.ownedLoop?.wake(true);
        this.sharedLoop?.wake(true);
        if (!this.bootstrapped) {
          this.bootstrapped = true;
          this.booting = this.bootstrap(created).catch((e) =>
            this.logger.error(`start-up failed: ${(e as Error).stack}`),
          );
        } else if (created) {
          // the consumer was lost with whatever it held: reconcile with every online peer
          void this.reconcileAll();
        }
        return;
      } catch (e) {
        const delay = backoffDelay(attempt, 250, 5000);
        this.logger.warn(`cannot set up the stream/consumer yet (${(e as Error).message}); retrying in ${delay} ms`);
        await sleep(delay, this.abort.signal);
      }
    }
  }

  /**
   * First link of this process: backfill when the database has never been filled, then consume
   * the durable queue (catching_up) until it is drained (ready).
   */
  private async bootstrap(consumerCreated: boolean): Promise<void> {
    const wasFilled = await this.backfill!.isFinished();
    if (!wasFilled) {
      this.phase = 'backfilling';
      await this.runBackfill();
      if (this.stopped) return;
    }
    this.phase = 'catching_up';
    this.consuming ??= this.consumeLoop();
    // a lost consumer lost what it held: ready only once every online peer was asked
    if (wasFilled && consumerCreated) await this.reconcileAll();
    for (let attempt = 0; !this.stopped; attempt++) {
      try {
        // a backlog of one fetch is live traffic, not catching up
        if (
          this.linked &&
          this.transport!.connected &&
          (await this.transport!.pending()) <= FETCH_BATCH &&
          !this.catchUpRunning
        ) {
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

  /** Pulls the library from the best online peer, switching peers when one fails. */
  private async runBackfill(): Promise<void> {
    for (let attempt = 0; !this.stopped; attempt++) {
      let peers: WatermarksReply[] = [];
      try {
        peers = (await this.peerClient!.discover(1500)).filter((p) => p.deviceId !== this.options.deviceId);
      } catch (e) {
        this.logger.warn(`peer discovery failed: ${(e as Error).message}`);
      }
      if (peers.length === 0 && !(await this.backfill!.hasStarted())) {
        this.logger.log("no peer online and nothing pulled yet: this is the library's first device");
        await this.backfill!.finishEmpty();
        return;
      }
      // prefer complete peers with the most data
      peers.sort((a, b) => Number(a.phase === 'backfilling') - Number(b.phase === 'backfilling') || b.rows - a.rows);
      for (const peer of peers) {
        try {
          this.logger.log(`backfilling from ${peer.name} (${peer.deviceId}): ${peer.rows} rows`);
          await this.backfill!.runFrom(peer);
          return;
        } catch (e) {
          if (this.stopped) return;
          this.logger.warn(`backfill from ${peer.name} interrupted (${(e as Error).message}); trying another peer`);
        }
      }
      await sleep(backoffDelay(attempt, 500, 5000), this.abort.signal);
    }
  }

  /**
   * Removes a device from the library (an operator's decision, e.g. a lost laptop): recorded
   * here at once and announced through the stream (again at every connection, deduplicated), so
   * every device stops waiting for its acknowledgements.
   */
  async removePeer(id: string): Promise<void> {
    if (id === this.options.deviceId) throw new InvalidInputError('deviceId', 'a device cannot remove itself');
    const known = await this.devices.get(this.db, id);
    if (!known) throw new NotFoundError('device', id);
    await this.devices.markRemoved(this.db, id);
    if (this.transport?.connected && this.linked) await this.announceRemoval(id).catch(() => undefined);
    await this.pruneAcknowledged();
  }

  private async announceRemoval(id: string): Promise<void> {
    const t = this.transport!;
    const msg: RemovedMessage = {
      v: 1,
      kind: 'removed',
      library: this.options.libraryId,
      origin: this.options.deviceId,
      device: id,
    };
    await t.publishLog(
      t.subjects.log('removed', this.options.deviceId),
      Buffer.from(JSON.stringify(msg)),
      `removed:${id}`,
    );
  }

  /** Catches up from every online peer (after the consumer or the stream was lost). */
  async reconcileAll(): Promise<void> {
    try {
      const peers = await this.peerClient!.discover(1500);
      for (const p of peers) if (p.deviceId !== this.options.deviceId) this.scheduleCatchUp(p.deviceId);
    } catch (e) {
      this.logger.warn(`reconcile failed: ${(e as Error).message}`);
    }
  }

  /** Queues a watermark exchange and catch-up with peer; one catch-up runs at a time. */
  scheduleCatchUp(peer: string): void {
    if (this.stopped || this.phase === 'backfilling' || !this.bootstrapped) return;
    this.catchUpQueue.add(peer);
    this.catchUpRunning ??= (async () => {
      while (this.catchUpQueue.size && !this.stopped) {
        const next = this.catchUpQueue.values().next().value as string;
        this.catchUpQueue.delete(next);
        try {
          await this.catchUp!.catchUpFrom(next);
          for (const k of [...this.gaps]) if (k.endsWith(next)) this.gaps.delete(k);
        } catch (e) {
          this.logger.warn(`catch-up from ${next} failed: ${(e as Error).message}`);
        }
      }
    })().finally(() => (this.catchUpRunning = null));
  }

  /** A peer claiming the same changes we lack for three heartbeats in a row gets a catch-up. */
  private notePeerAhead(id: string, signature: string): void {
    const seen = this.ahead.get(id);
    const count = seen && seen.signature === signature ? seen.count + 1 : 1;
    this.ahead.set(id, { signature, count });
    if (count >= 3) {
      this.ahead.delete(id);
      this.scheduleCatchUp(id);
    }
  }

  private async consumeLoop(): Promise<void> {
    let attempt = 0;
    while (!this.stopped) {
      const transport = this.transport!;
      if (!transport.connected || !this.linked) {
        await sleep(200, this.abort.signal);
        continue;
      }
      try {
        let transient = false;
        await transport.fetch(
          FETCH_BATCH,
          FETCH_EXPIRES_MS,
          (m) => this.decode(m),
          async (m, decoded) => {
            if (!(await this.receive(m, decoded))) transient = true;
          },
        );
        if (transient) await sleep(backoffDelay(attempt++), this.abort.signal);
        else attempt = 0;
      } catch (e) {
        if (this.stopped) break;
        if (isNotFound(e)) {
          this.logger.warn(`stream or consumer missing (${(e as Error).message}); recreating`);
          this.linked = false;
          void this.link();
        }
        await sleep(backoffDelay(attempt++, 200, 5000), this.abort.signal);
      }
    }
  }

  /**
   * The part of handling a log message that needs no database: parsing and validation (and, for
   * state, the rows serialised for the upserts). Pure, so the fetch loop runs it for the next
   * message while the current one is being written.
   */
  private decode(m: JsMsg): Decoded {
    const subjectOrigin = this.transport!.subjects.originOf(m.subject);
    // our own broadcast coming back through the shared stream: nothing to apply, not worth parsing
    if (subjectOrigin === this.options.deviceId) return { kind: 'own' };
    const raw = Buffer.from(m.data).toString('utf8');
    try {
      const parsed = LogMessage.safeParse(JSON.parse(raw));
      if (!parsed.success) throw new RejectedMessageError('malformed', describeZodError(parsed.error));
      const msg = parsed.data;
      if (msg.library !== this.options.libraryId)
        throw new RejectedMessageError('wrong_library', `library ${msg.library}`);
      if (msg.origin !== subjectOrigin)
        throw new RejectedMessageError('origin_mismatch', `subject names ${subjectOrigin}, payload ${msg.origin}`);
      return { kind: 'message', msg, raw, state: msg.kind === 'state' ? this.ownedApplier.prepare(msg) : null };
    } catch (e) {
      const reason =
        e instanceof RejectedMessageError
          ? e
          : new RejectedMessageError('malformed', `not JSON: ${(e as Error).message}`);
      return { kind: 'rejected', origin: subjectOrigin, reason, raw };
    }
  }

  /**
   * Handles one log message: applied and acked, dead-lettered (terminated), held (clock drift), or
   * left for redelivery after a transient failure (returns false then).
   */
  private async receive(m: JsMsg, decoded: Decoded = this.decode(m)): Promise<boolean> {
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
        if (msg.device === this.options.deviceId)
          this.logger.warn(`device ${msg.origin} removed this device from the library`);
        else if (await this.devices.markRemoved(this.db, msg.device))
          this.logger.log(`device ${msg.device} was removed from the library by ${msg.origin}`);
      } else if (msg.kind === 'state') {
        if (!(await this.ownedApplier.apply(decoded.state ?? msg))) this.noteGap(msg.origin, 'state');
        this.presence?.scheduleAck(msg.origin);
      } else {
        if (!(await this.sharedApplier.apply(msg))) this.noteGap(msg.origin, 'shared');
        this.presence?.scheduleAck(msg.origin);
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
        return this.deadLetter(
          m,
          msg.origin,
          new RejectedMessageError('invalid_data', `${sqlState}: ${(e as Error).message}`),
          raw,
        );
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

  private noteGap(origin: string, kind: string): void {
    if (!this.gaps.has(`${kind}:${origin}`)) this.logger.warn(`gap in the ${kind} stream of ${origin}: catching up`);
    this.gaps.add(`${kind}:${origin}`);
    void this.devices
      .get(this.db, origin)
      .then((d) => (d?.online ? this.scheduleCatchUp(origin) : this.reconcileAll()));
  }

  /** Deletes change-log rows every active peer has acknowledged. */
  async pruneAcknowledged(): Promise<number> {
    if (this.pruneRunning) return 0;
    this.pruneRunning = true;
    try {
      const upTo = await this.devices.minimumSharedAck(this.db);
      const n = upTo ? await this.sharedRepo.pruneUpTo(this.db, upTo) : 0;
      if (n) this.metrics.pruned.inc(n);
      await collectTombstones(this.db, await this.devices.tombstoneHorizons(this.db));
      this.metrics.logSize.set(await this.sharedRepo.logSize(this.db));
      return n;
    } catch (e) {
      this.logger.warn(`pruning failed: ${(e as Error).message}`);
      return 0;
    } finally {
      this.pruneRunning = false;
    }
  }

  /** Stops consuming (in-flight messages stay unacknowledged and are redelivered), then closes. */
  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    this.abort.abort();
    for (const u of this.unsubscribe) u();
    if (this.pruneTimer) clearInterval(this.pruneTimer);
    this.presence?.stop();
    await Promise.all([this.ownedLoop?.stop(), this.sharedLoop?.stop()]);
    await this.consuming;
    // closing the connection interrupts catch-up and backfill requests; their progress is committed
    await this.transport?.stop();
    await Promise.all([this.catchUpRunning, this.booting]);
  }
}
