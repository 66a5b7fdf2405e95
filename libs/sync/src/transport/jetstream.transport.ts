import { Logger } from '@nestjs/common';
import {
  AckPolicy,
  DeliverPolicy,
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
import { RejectedMessageError } from '../errors';
import type { Opened } from '../trust/library-trust';
import { deviceConnectOptions, type NatsAuth } from './nats-auth';
import { NatsHub, ScopedConnection } from './nats-hub';
import { senderOf, type LibrarySubjects } from './subjects';

/** Seals what the device sends and opens what it receives (LibraryTrust; docs/design.md "Trust"). */
export interface Sealer {
  seal(context: string, plaintext: Uint8Array, keyId?: string): { data: Buffer; nonce: Buffer };
  /** Throws a RejectedMessageError when the message is not from a member or was changed. */
  open(context: string, data: Uint8Array): Opened;
}

/** How the transport seals and connects: the sealer, and the credentials of this device's NATS user. */
export interface TransportOptions {
  sealer: Sealer;
  auth?: NatsAuth | null;
  /** Replicas of the library's stream (SYNC_STREAM_REPLICAS). Default 1. */
  replicas?: number;
}

/** A message refused at the boundary: what the transport reports to be counted and dead-lettered. */
export type RefusedHandler = (subject: string, error: RejectedMessageError, data: Uint8Array) => void;

/** The context a reply is sealed under: bound to the request's subject and nonce, so it answers only that request. */
export const replyContext = (subject: string, requestNonce: Uint8Array): string =>
  `reply|${subject}|${Buffer.from(requestNonce).toString('hex')}`;

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
  private readonly hub: NatsHub;
  /** This transport made its hub (given servers, not a hub) and closes it when it stops. */
  private readonly ownsHub: boolean;
  private scoped: ScopedConnection | null = null;
  private unlisten: (() => void) | null = null;
  private stopped = false;
  private readonly listeners: { connected: (() => void)[] } = { connected: [] };
  /** Told about every message refused at the boundary (not sealed by a member, changed, moved). */
  onRefused: RefusedHandler = () => undefined;
  readonly sealer: Sealer;
  private readonly auth: NatsAuth | null;
  /** Replicas of the library's stream. */
  private readonly replicas: number;

  /**
   * `nats`: the device's shared connection (NatsHub), or servers to connect to on its own (tools,
   * tests, a device with one library). `options`: the sealer alone, or with the device's NATS
   * credentials (used when it connects on its own).
   */
  constructor(
    nats: NatsHub | string[],
    name: string,
    readonly subjects: LibrarySubjects,
    private readonly deviceId: string,
    options: Sealer | TransportOptions,
  ) {
    const o = 'sealer' in options ? options : { sealer: options };
    this.sealer = o.sealer;
    this.auth = o.auth ?? null;
    this.replicas = 'replicas' in o ? (o.replicas ?? 1) : 1;
    this.ownsHub = Array.isArray(nats);
    this.hub = Array.isArray(nats) ? new NatsHub(nats, name, deviceConnectOptions(deviceId, this.auth)) : nats;
  }

  /** Connected, and not stopped. */
  get connected(): boolean {
    return !this.stopped && this.hub.connected && !!this.hub.connection;
  }

  /** The connection as this transport uses it (null until the first one): for servers answering requests on it. */
  private get nc(): NatsConnection | null {
    const nc = this.hub.connection;
    if (!nc || this.stopped) return null;
    if (this.scoped?.target !== nc) {
      this.scoped?.release();
      this.scoped = new ScopedConnection(nc);
    }
    return this.scoped.connection;
  }

  /**
   * Opens a message received on `subject`: sealed by a member and, on a subject that names its
   * sender (log, presence, ack), signed by that sender. Throws a RejectedMessageError otherwise.
   */
  open(subject: string, data: Uint8Array, context = subject): Opened {
    const opened = this.sealer.open(context, data);
    const sender = senderOf(subject);
    if (sender !== null && sender !== opened.signer)
      throw new RejectedMessageError('origin_mismatch', `subject names ${sender}, signed by ${opened.signer}`);
    return opened;
  }

  /** Seals a payload for `subject` (or for another context: a reply), under the current epoch or `keyId`'s. */
  seal(context: string, payload: Uint8Array, keyId?: string): { data: Buffer; nonce: Buffer } {
    return this.sealer.seal(context, payload, keyId);
  }

  /** Largest message the server accepts, with room for headers. */
  get maxPayload(): number {
    const max = this.hub.connection?.info?.max_payload ?? 1024 * 1024;
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

  /** Connects in the background (or joins the shared connection): an unreachable NATS never blocks the device. */
  start(): void {
    if (this.stopped || this.unlisten) return;
    this.unlisten = this.hub.listen({
      connected: () => {
        if (!this.stopped) for (const fn of this.listeners.connected) fn();
      },
      // a reply to a request sent before the disconnect may never come: fail them now
      disconnected: () => {
        for (const fail of [...this.requestsInFlight]) fail(new Error('NATS disconnected while waiting for the reply'));
      },
    });
    this.hub.start();
  }

  private conn(): NatsConnection {
    const nc = this.nc;
    if (!nc || !this.connected) throw new Error('NATS is not connected');
    return nc;
  }

  /**
   * Creates the library's stream if it does not exist, with `replicas` replicas; an existing one
   * with fewer is raised in place (never recreated: what it holds stays).
   */
  async ensureStream(): Promise<void> {
    const jsm = await this.conn().jetstreamManager();
    try {
      const info = await jsm.streams.info(this.subjects.stream);
      if ((info.config.num_replicas ?? 1) < this.replicas) {
        await jsm.streams.update(this.subjects.stream, { ...info.config, num_replicas: this.replicas });
        this.logger.log(
          `stream ${this.subjects.stream}: replicas raised from ${info.config.num_replicas ?? 1} to ${this.replicas}`,
        );
      }
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
          num_replicas: this.replicas,
        });
        this.logger.log(`created stream ${this.subjects.stream} (${this.replicas} replicas)`);
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
  async publishLog(subject: string, payload: Uint8Array, msgId: string, keyId?: string): Promise<void> {
    const js = this.conn().jetstream();
    const h = headers();
    h.set('Nats-Msg-Id', msgId);
    await js.publish(subject, this.sealer.seal(subject, payload, keyId).data, {
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
    signal?: AbortSignal,
  ): Promise<number> {
    const js = this.conn().jetstream();
    const consumer = await js.consumers.get(this.subjects.stream, this.subjects.durable(this.deviceId));
    const batch = await consumer.fetch({ max_messages: max, expires: expiresMs });
    // stopping ends a pull that is still waiting, rather than wait for it to expire
    const cancel = () => batch.stop();
    signal?.addEventListener('abort', cancel, { once: true });
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
      signal?.removeEventListener('abort', cancel);
      batch.stop();
    }
    return n;
  }

  /** One request, one correlated reply; throws on timeout, no responder, or an error reply. */
  async request<T>(subject: string, payload: unknown, timeoutMs = 15_000): Promise<T> {
    const sealed = this.sealer.seal(subject, Buffer.from(JSON.stringify(payload)));
    const sent = this.conn().request(subject, sealed.data, { timeout: timeoutMs });
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
    const body = this.openReply<T>(subject, sealed.nonce, reply.data);
    if (!body.ok) throw new Error(`${subject}: ${body.error}`);
    return body.result as T;
  }

  /** A reply to our request on `subject`: sealed by a member for that request (by the addressed device, if one). */
  private openReply<T>(
    subject: string,
    nonce: Buffer,
    data: Uint8Array,
  ): { ok: boolean; result?: T; error?: string; signer: string } {
    let opened: Opened;
    try {
      opened = this.sealer.open(replyContext(subject, nonce), data);
    } catch (e) {
      if (e instanceof RejectedMessageError) this.onRefused(`${subject} (reply)`, e, data);
      throw e;
    }
    const parts = subject.split('.');
    const addressed = parts[0] === 'sync' && parts[2] === 'rpc' ? parts[3] : 'all';
    if (addressed !== 'all' && addressed !== opened.signer) {
      const e = new RejectedMessageError('origin_mismatch', `a reply from ${addressed} signed by ${opened.signer}`);
      this.onRefused(`${subject} (reply)`, e, data);
      throw e;
    }
    return {
      ...(JSON.parse(opened.plaintext.toString('utf8')) as { ok: boolean; result?: T; error?: string }),
      signer: opened.signer,
    };
  }

  /** Asks everyone listening on subject and collects the replies that arrive within windowMs. */
  async gather<T>(subject: string, payload: unknown, windowMs: number): Promise<T[]> {
    const out: T[] = [];
    const sealed = this.sealer.seal(subject, Buffer.from(JSON.stringify(payload)));
    const replies = await this.conn().requestMany(subject, sealed.data, {
      strategy: RequestStrategy.Timer,
      maxWait: windowMs,
    });
    try {
      for await (const m of replies) {
        let body;
        try {
          body = this.openReply<T>(subject, sealed.nonce, m.data);
        } catch {
          continue; // refused (counted): not one of ours
        }
        // a reply that names a device must come from that device
        const named = (body.result as { deviceId?: unknown } | undefined)?.deviceId;
        if (body.ok && (named === undefined || named === body.signer)) out.push(body.result as T);
      }
    } catch {
      /* no responders: an empty answer */
    }
    return out;
  }

  publishCore(subject: string, payload: Uint8Array): void {
    if (this.nc && this.connected) this.nc.publish(subject, this.sealer.seal(subject, payload).data);
  }

  /**
   * A core NATS subscription that survives reconnects (the client resubscribes). Only messages
   * that open reach fn; the others are reported to onRefused. Messages whose subject names this
   * device as their sender (its own heartbeats) are dropped unopened.
   */
  subscribeCore(subject: string, fn: (opened: Opened, subject: string) => void): Subscription | null {
    if (!this.nc) return null;
    return this.nc.subscribe(subject, {
      callback: (err, msg) => {
        // our own heartbeats come back on the wildcard: not worth a signature check to drop them
        if (err || senderOf(msg.subject) === this.deviceId) return;
        let opened: Opened;
        try {
          opened = this.open(msg.subject, msg.data);
        } catch (e) {
          if (e instanceof RejectedMessageError) this.onRefused(msg.subject, e, msg.data);
          return;
        }
        fn(opened, msg.subject);
      },
    });
  }

  /** Ends this transport's subscriptions and requests; closes the connection only when it is its own. */
  async stop(): Promise<void> {
    this.stopped = true;
    for (const fail of [...this.requestsInFlight]) fail(new Error('the transport is stopping'));
    this.unlisten?.();
    this.unlisten = null;
    this.scoped?.release();
    this.scoped = null;
    if (this.ownsHub) await this.hub.close();
  }
}
