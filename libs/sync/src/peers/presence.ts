import { Logger } from '@nestjs/common';
import type { Db } from '@lib/db';
import type { ClockService } from '../clock/clock.service';
import type { SyncMetrics } from '../metrics';
import type { JetStreamTransport } from '../transport/jetstream.transport';
import type { Opened } from '../trust/library-trust';
import { AckMessage, Heartbeat } from '../transport/messages';
import { senderOf } from '../transport/subjects';
import type { DevicesRepository } from '../store/devices.repository';

export interface PresenceEvents {
  /** A peer that was offline (or unknown) sent a heartbeat. */
  peerOnline(id: string): void;
  /** A peer acknowledged some of our changes. */
  acknowledged(): void;
  /** A peer holds changes we lack; `signature` identifies what it claims (same value = no progress). */
  peerAhead(id: string, signature: string): void;
  /** A peer's heartbeat carried its membership digest. */
  trustDigest(id: string, digest: string | undefined): void;
  /** A peer's heartbeat was recorded (anti-entropy compares its range digests). */
  /** A peer's heartbeat, recorded; `ahead`: it holds changes beyond our watermarks (catch-up's work). */
  heartbeat?(hb: Heartbeat, ahead: boolean): void;
}

/** Heartbeats between two readings of this device's stream heads while it writes nothing. */
const HEADS_REFRESH_BEATS = 30;

/**
 * Heartbeats over core NATS carrying this device's watermarks, and explicit acks after applying
 * an origin's changes. A peer that misses three heartbeats is marked offline. Acks from either
 * source are recorded in the devices table, which drives pruning.
 */
export class PresenceService {
  private readonly logger = new Logger('Presence');
  private timer: NodeJS.Timeout | null = null;
  private readonly ackTimers = new Map<string, NodeJS.Timeout>();
  /** When each peer's last heartbeat arrived (this run): only they can turn stale. */
  private readonly heard = new Map<string, number>();
  /** This device's stream heads as last read, and the local-write generation they were read at. */
  private headsRead: {
    value: { ownedHead: string | null; sharedHead: string | null };
    gen: number;
    beats: number;
  } | null = null;
  private headsGen = 0;
  private watermarksRead: {
    value: { state: Record<string, string>; shared: Record<string, string> };
    at: number;
    beats: number;
  } | null = null;
  private subscribed = false;

  constructor(
    private readonly db: Db,
    private readonly devices: DevicesRepository,
    private readonly transport: JetStreamTransport,
    private readonly clock: ClockService,
    private readonly metrics: SyncMetrics,
    private readonly self: { id: string; name: string; libraryId: string },
    private readonly intervalMs: number,
    private readonly phase: () => string,
    private readonly heads: () => Promise<{ ownedHead: string | null; sharedHead: string | null }>,
    private readonly trustDigest: () => string,
    private readonly events: PresenceEvents,
    /** This device's top-level range digests (anti-entropy), for each heartbeat. */
    private readonly ranges?: () => Promise<Record<string, string>>,
  ) {}

  start(): void {
    this.timer = setInterval(() => void this.tick(), this.intervalMs);
  }

  /** Subscribes once a connection exists (the client resubscribes after reconnects). */
  subscribe(): void {
    if (this.subscribed) return;
    const s = this.transport.subjects;
    const a = this.transport.subscribeCore(s.presenceAll, (m, subject) => void this.receiveHeartbeat(m, subject));
    const b = this.transport.subscribeCore(s.acksFor(this.self.id), (m, subject) => void this.receiveAck(m, subject));
    this.subscribed = !!a && !!b;
    void this.tick();
  }

  /** A local write moved this device's heads: the next heartbeat reads them again. */
  headsChanged(): void {
    this.headsGen++;
  }

  /**
   * This device's stream heads: they move with its own writes (headsChanged), so a heartbeat reads
   * them again only after one, and every HEADS_REFRESH_BEATS beats in any case (rows of its own
   * that came back by backfill or catch-up, collected tombstones).
   */
  private async currentHeads(): Promise<{ ownedHead: string | null; sharedHead: string | null }> {
    const r = this.headsRead;
    if (r && r.gen === this.headsGen && r.beats < HEADS_REFRESH_BEATS) {
      r.beats++;
      return r.value;
    }
    const gen = this.headsGen;
    const value = await this.heads();
    this.headsRead = { value, gen, beats: 1 };
    return value;
  }

  /** What `watermarks` returned, read again once the repository says they may have moved (and every HEADS_REFRESH_BEATS beats). */
  private async currentWatermarks(): Promise<{ state: Record<string, string>; shared: Record<string, string> }> {
    const r = this.watermarksRead;
    if (r && r.at === this.devices.watermarksMoved && r.beats < HEADS_REFRESH_BEATS) {
      r.beats++;
      return r.value;
    }
    const at = this.devices.watermarksMoved;
    const value = await this.devices.watermarks(this.db);
    this.watermarksRead = { value, at, beats: 1 };
    return value;
  }

  private async tick(): Promise<void> {
    try {
      await this.beat();
      // peers are marked online only by their heartbeats: with none gone quiet, nobody is stale
      const before = Date.now() - 3 * this.intervalMs;
      if (![...this.heard.values()].some((t) => t < before)) return;
      const stale = await this.devices.markStaleOffline(this.db, new Date(before));
      for (const [id, t] of this.heard) if (t < before) this.heard.delete(id);
      for (const id of stale) {
        this.logger.log(`peer ${id} missed three heartbeats: offline`);
        this.metrics.peerOnline.set({ peer: id }, 0);
      }
    } catch (e) {
      this.logger.warn(`heartbeat failed: ${(e as Error).message}`);
    }
  }

  async beat(): Promise<void> {
    if (!this.transport.connected) return;
    const hb: Heartbeat = {
      v: 1,
      kind: 'heartbeat',
      library: this.self.libraryId,
      origin: this.self.id,
      name: this.self.name,
      phase: this.phase(),
      hlc: this.clock.current(),
      ...(await this.currentWatermarks()),
      ...(await this.currentHeads()),
      trust: this.trustDigest(),
      ...(await this.currentRanges()),
    };
    this.transport.publishCore(this.transport.subjects.presence(this.self.id), Buffer.from(JSON.stringify(hb)));
  }

  /** The range digests for a heartbeat; a heartbeat goes without them rather than not at all. */
  private async currentRanges(): Promise<{ ranges?: Record<string, string> }> {
    if (!this.ranges) return {};
    try {
      return { ranges: await this.ranges() };
    } catch (e) {
      this.logger.warn(`range digests not read: ${(e as Error).message}`);
      return {};
    }
  }

  /** Tells `origin` soon (coalesced per origin) how far we have applied its streams. */
  scheduleAck(origin: string): void {
    // something was applied (and committed): the next heartbeat reads the watermarks again
    this.watermarksRead = null;
    if (this.ackTimers.has(origin)) return;
    this.ackTimers.set(
      origin,
      setTimeout(() => {
        this.ackTimers.delete(origin);
        void this.sendAck(origin).catch((e) => this.logger.warn(`ack failed: ${(e as Error).message}`));
      }, 100),
    );
  }

  private async sendAck(origin: string): Promise<void> {
    const peer = await this.devices.get(this.db, origin);
    if (!peer) return;
    const ack: AckMessage = {
      v: 1,
      kind: 'ack',
      library: this.self.libraryId,
      origin: this.self.id,
      target: origin,
      shared: peer.shared_watermark,
      state: peer.state_watermark,
    };
    this.transport.publishCore(this.transport.subjects.ack(origin, this.self.id), Buffer.from(JSON.stringify(ack)));
  }

  /**
   * The message, when it parses, is of this library and names its signer as its origin, who is
   * also the sender its subject names (the subject is what NATS authorization confines).
   */
  private parse<T>(
    schema: { safeParse(x: unknown): { success: true; data: T } | { success: false } },
    m: Opened,
    subject: string,
  ): T | null {
    try {
      const r = schema.safeParse(JSON.parse(m.plaintext.toString('utf8')));
      const d = r.success ? (r.data as { library: string; origin: string }) : null;
      if (d && d.library === this.self.libraryId && d.origin === m.signer && d.origin === senderOf(subject))
        return r.success ? r.data : null;
    } catch {
      /* counted below */
    }
    this.metrics.rejected.inc({ reason: 'invalid_presence' });
    return null;
  }

  private async receiveHeartbeat(m: Opened, subject: string): Promise<void> {
    const hb = this.parse(Heartbeat, m, subject);
    if (!hb || hb.origin === this.self.id) return;
    this.events.trustDigest(hb.origin, hb.trust);
    try {
      const before = await this.devices.get(this.db, hb.origin);
      if (before?.removed_at) return;
      await this.devices.upsertPeer(this.db, { id: hb.origin, name: hb.name, libraryId: this.self.libraryId });
      await this.devices.markSeen(this.db, hb.origin, new Date());
      this.heard.set(hb.origin, Date.now());
      await this.devices.recordAcks(this.db, hb.origin, {
        shared: hb.shared[this.self.id],
        state: hb.state[this.self.id],
      });
      await this.devices.recordPeerWatermarks(this.db, hb.origin, hb.state, hb.shared);
      this.metrics.peerOnline.set({ peer: hb.origin }, 1);
      const behind = await this.behind(hb);
      if (behind) this.events.peerAhead(hb.origin, behind);
      if (!before?.online) {
        this.logger.log(`peer ${hb.name} (${hb.origin}) is online`);
        this.events.peerOnline(hb.origin);
      }
      this.events.acknowledged();
      this.events.heartbeat?.(hb, behind !== null);
    } catch (e) {
      this.logger.warn(`heartbeat of ${hb.origin} not recorded: ${(e as Error).message}`);
    }
  }

  /** What the heartbeat's sender holds beyond our watermarks, as a signature; null if nothing. */
  private async behind(hb: Heartbeat): Promise<string | null> {
    const mine = new Map((await this.devices.peers(this.db)).map((p) => [p.id, p]));
    const claims: string[] = [];
    const check = (
      kind: string,
      origin: string,
      theirs: string | null | undefined,
      ours: string | null | undefined,
    ) => {
      // our own position is part of the claim: while we are still progressing it is not a stall
      if (origin !== this.self.id && theirs && (!ours || ours < theirs))
        claims.push(`${kind}:${origin}:${theirs}:${ours ?? ''}`);
    };
    check('state', hb.origin, hb.ownedHead, mine.get(hb.origin)?.state_watermark);
    check('shared', hb.origin, hb.sharedHead, mine.get(hb.origin)?.shared_watermark);
    for (const [owner, wm] of Object.entries(hb.state)) check('state', owner, wm, mine.get(owner)?.state_watermark);
    for (const [origin, wm] of Object.entries(hb.shared)) {
      // another origin's shared changes are pulled from that origin while it is online
      if (!mine.get(origin)?.online) check('shared', origin, wm, mine.get(origin)?.shared_watermark);
    }
    return claims.length ? claims.sort().join(',') : null;
  }

  private async receiveAck(m: Opened, subject: string): Promise<void> {
    const ack = this.parse(AckMessage, m, subject);
    if (!ack || ack.target !== this.self.id) return;
    try {
      await this.devices.recordAcks(this.db, ack.origin, { shared: ack.shared, state: ack.state });
      this.events.acknowledged();
    } catch (e) {
      this.logger.warn(`ack of ${ack.origin} not recorded: ${(e as Error).message}`);
    }
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    for (const t of this.ackTimers.values()) clearTimeout(t);
    this.ackTimers.clear();
  }
}
