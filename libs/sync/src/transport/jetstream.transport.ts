import { Logger } from '@nestjs/common';
import {
  AckPolicy,
  connect,
  DeliverPolicy,
  Events,
  headers,
  JsMsg,
  NatsConnection,
  NatsError,
  nanos,
  RequestStrategy,
  RetentionPolicy,
  StorageType,
  Subscription,
} from 'nats';
import { sleep } from './backoff';
import type { LibrarySubjects } from './subjects';

const STREAM_MAX_AGE_MS = 30 * 24 * 3600_000;
const DUPLICATE_WINDOW_MS = 2 * 60_000;

/** A JetStream API answer that the stream or the consumer does not exist. */
export function isNotFound(e: unknown): boolean {
  const err = e as NatsError;
  const api = typeof err?.jsError === 'function' ? err.jsError() : (err?.api_error ?? null);
  if (api && (api.code === 404 || api.err_code === 10059 || api.err_code === 10014)) return true;
  const text = String(err?.message ?? '');
  return (
    /stream not found|consumer not found|no responders|consumer deleted|stream deleted/i.test(text) ||
    err?.code === '503'
  );
}

/**
 * The library's JetStream plumbing for one device: a connection that keeps reconnecting, the
 * stream and this device's durable consumer (created when missing, recreated when lost),
 * deduplicated publishing, pull fetches, and core NATS for presence and acks.
 */
export class JetStreamTransport {
  /** Rejecters of the requests waiting for a reply (failed at once when the connection drops). */
  private readonly requestsInFlight = new Set<(e: Error) => void>();
  private readonly logger = new Logger('Transport');
  private nc: NatsConnection | null = null;
  private stopped = false;
  private readonly abort = new AbortController();
  private readonly listeners: { connected: (() => void)[] } = { connected: [] };
  connected = false;

  constructor(
    private readonly servers: string[],
    private readonly name: string,
    readonly subjects: LibrarySubjects,
    private readonly deviceId: string,
  ) {}

  /** Largest message the server accepts, with room for headers. */
  get maxPayload(): number {
    const max = this.nc?.info?.max_payload ?? 1024 * 1024;
    return max - Math.min(16 * 1024, Math.floor(max / 4));
  }

  /** The connection (null until the first one): for servers answering requests on it. */
  get connection(): NatsConnection | null {
    return this.nc;
  }

  /** Called on the first connection and after every reconnection. */
  onConnected(fn: () => void): void {
    this.listeners.connected.push(fn);
  }

  /** Connects in the background: an unreachable NATS never blocks the device. */
  start(): void {
    void this.connectLoop();
  }

  private async connectLoop(): Promise<void> {
    let logged = false;
    while (!this.stopped && !this.nc) {
      try {
        const nc = await connect({
          servers: this.servers,
          name: this.name,
          maxReconnectAttempts: -1,
          reconnectTimeWait: 500,
          reconnectJitter: 250,
          pingInterval: 5000,
          maxPingOut: 3,
          timeout: 5000,
        });
        if (this.stopped) {
          await nc.close();
          return;
        }
        this.nc = nc;
        this.connected = true;
        this.logger.log(`connected to NATS ${nc.getServer()}`);
        void this.watchStatus(nc);
        this.emitConnected();
      } catch (e) {
        if (!logged) this.logger.warn(`NATS unreachable (${(e as Error).message}); serving locally and retrying`);
        logged = true;
        await sleep(1000, this.abort.signal);
      }
    }
  }

  private emitConnected(): void {
    for (const fn of this.listeners.connected) fn();
  }

  private async watchStatus(nc: NatsConnection): Promise<void> {
    for await (const s of nc.status()) {
      if (s.type === Events.Disconnect) {
        this.connected = false;
        this.logger.warn('NATS disconnected; retrying');
        // a reply to a request sent before the disconnect may never come: fail them now
        for (const fail of [...this.requestsInFlight]) fail(new Error('NATS disconnected while waiting for the reply'));
      } else if (s.type === Events.Reconnect) {
        this.connected = true;
        this.logger.log(`NATS reconnected to ${nc.getServer()}`);
        this.emitConnected();
      }
    }
  }

  private conn(): NatsConnection {
    if (!this.nc || !this.connected) throw new Error('NATS is not connected');
    return this.nc;
  }

  /** Creates the library's stream if it does not exist. */
  async ensureStream(): Promise<void> {
    const jsm = await this.conn().jetstreamManager();
    try {
      await jsm.streams.info(this.subjects.stream);
    } catch (e) {
      if (!isNotFound(e)) throw e;
      try {
        await jsm.streams.add({
          name: this.subjects.stream,
          subjects: [this.subjects.logAll],
          retention: RetentionPolicy.Limits,
          storage: StorageType.File,
          max_age: nanos(STREAM_MAX_AGE_MS),
          duplicate_window: nanos(DUPLICATE_WINDOW_MS),
        });
        this.logger.log(`created stream ${this.subjects.stream}`);
      } catch (e2) {
        // another device created it first
        if (!/already in use|exists/i.test(String((e2 as Error).message))) throw e2;
      }
    }
  }

  /**
   * Creates this device's durable consumer if missing. Returns true when it had to be created,
   * meaning whatever the old consumer held is gone and watermarks must be reconciled.
   */
  async ensureConsumer(): Promise<boolean> {
    const jsm = await this.conn().jetstreamManager();
    const durable = this.subjects.durable(this.deviceId);
    try {
      await jsm.consumers.info(this.subjects.stream, durable);
      return false;
    } catch (e) {
      if (!isNotFound(e)) throw e;
    }
    await jsm.consumers.add(this.subjects.stream, {
      durable_name: durable,
      ack_policy: AckPolicy.Explicit,
      // live changes from now on; what came before is pulled by backfill or catch-up
      deliver_policy: DeliverPolicy.New,
      filter_subject: this.subjects.logAll,
      ack_wait: nanos(60_000),
      max_ack_pending: 1000,
      max_deliver: -1,
    });
    this.logger.log(`created durable consumer ${durable}`);
    return true;
  }

  /** Publishes one log message, deduplicated by msgId within the stream's window. */
  async publishLog(subject: string, payload: Uint8Array, msgId: string): Promise<void> {
    const js = this.conn().jetstream();
    const h = headers();
    h.set('Nats-Msg-Id', msgId);
    await js.publish(subject, payload, {
      msgID: msgId,
      headers: h,
      expect: { streamName: this.subjects.stream },
      timeout: 10_000,
    });
  }

  /** Messages still waiting in this device's consumer (for the catching_up phase). */
  async pending(): Promise<number> {
    const jsm = await this.conn().jetstreamManager();
    const info = await jsm.consumers.info(this.subjects.stream, this.subjects.durable(this.deviceId));
    return info.num_pending + info.num_ack_pending;
  }

  /**
   * Pulls up to max messages from this device's durable consumer, waiting at most expiresMs, and
   * hands them to onMessage one at a time, in order. `decode` (synchronous, pure) runs for the next
   * message as soon as it arrives, while onMessage is still busy with the current one.
   */
  async fetch<T>(
    max: number,
    expiresMs: number,
    decode: (m: JsMsg) => T,
    onMessage: (m: JsMsg, decoded: T) => Promise<void>,
  ): Promise<number> {
    const js = this.conn().jetstream();
    const consumer = await js.consumers.get(this.subjects.stream, this.subjects.durable(this.deviceId));
    const batch = await consumer.fetch({ max_messages: max, expires: expiresMs });
    const messages = batch[Symbol.asyncIterator]();
    const take = () => messages.next().then((r) => (r.done ? null : { m: r.value, decoded: decode(r.value) }));
    let n = 0;
    let next = take();
    try {
      for (;;) {
        const item = await next;
        if (!item) break;
        n++;
        next = take();
        next.catch(() => undefined); // observed when awaited
        await onMessage(item.m, item.decoded);
        if (this.stopped) break;
      }
    } finally {
      // a message decoded but not handled stays unacknowledged: the server redelivers it
      batch.stop();
    }
    return n;
  }

  /** One request, one correlated reply; throws on timeout, no responder, or an error reply. */
  async request<T>(subject: string, payload: unknown, timeoutMs = 15_000): Promise<T> {
    const sent = this.conn().request(subject, Buffer.from(JSON.stringify(payload)), { timeout: timeoutMs });
    sent.catch(() => undefined); // it may lose the race below
    let fail!: (e: Error) => void;
    const lost = new Promise<never>((_, reject) => (fail = reject));
    this.requestsInFlight.add(fail);
    let reply: Awaited<typeof sent>;
    try {
      reply = await Promise.race([sent, lost]);
    } finally {
      this.requestsInFlight.delete(fail);
    }
    const body = JSON.parse(Buffer.from(reply.data).toString('utf8')) as { ok: boolean; result?: T; error?: string };
    if (!body.ok) throw new Error(`${subject}: ${body.error}`);
    return body.result as T;
  }

  /** Asks everyone listening on subject and collects the replies that arrive within windowMs. */
  async gather<T>(subject: string, payload: unknown, windowMs: number): Promise<T[]> {
    const out: T[] = [];
    const replies = await this.conn().requestMany(subject, Buffer.from(JSON.stringify(payload)), {
      strategy: RequestStrategy.Timer,
      maxWait: windowMs,
    });
    try {
      for await (const m of replies) {
        const body = JSON.parse(Buffer.from(m.data).toString('utf8')) as { ok: boolean; result?: T };
        if (body.ok) out.push(body.result as T);
      }
    } catch {
      /* no responders: an empty answer */
    }
    return out;
  }

  publishCore(subject: string, payload: Uint8Array): void {
    if (this.nc && this.connected) this.nc.publish(subject, payload);
  }

  /** A core NATS subscription that survives reconnects (the client resubscribes). */
  subscribeCore(subject: string, fn: (data: Uint8Array, subject: string) => void): Subscription | null {
    if (!this.nc) return null;
    return this.nc.subscribe(subject, { callback: (err, msg) => !err && fn(msg.data, msg.subject) });
  }

  async stop(): Promise<void> {
    this.stopped = true;
    for (const fail of [...this.requestsInFlight]) fail(new Error('the transport is stopping'));
    this.abort.abort();
    const nc = this.nc;
    this.nc = null;
    this.connected = false;
    if (nc) await nc.close().catch(() => undefined);
  }
}
