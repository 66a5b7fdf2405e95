import { Logger } from '@nestjs/common';
import { connect, ConnectionOptions, Events, NatsConnection, Subscription, SubscriptionOptions } from 'nats';
import { sleep } from './backoff';

/** What a user of the shared connection is told about it. */
export interface NatsHubListener {
  /** The first connection, and every reconnection. */
  connected(): void;
  /** The connection dropped (the client reconnects by itself). */
  disconnected(): void;
}

/**
 * The device's one NATS connection, shared by the transports of all its libraries (API.md
 * "Libraries": one NATS connection serves them all). It connects in the background and keeps
 * retrying, so an unreachable NATS never blocks the device, and tells each registered listener
 * when it is (re)connected or lost.
 */
export class NatsHub {
  private readonly logger = new Logger('Nats');
  private readonly listeners = new Set<NatsHubListener>();
  private readonly abort = new AbortController();
  private nc: NatsConnection | null = null;
  private started = false;
  private closed = false;
  connected = false;

  constructor(
    private readonly servers: string[],
    private readonly name: string,
    private readonly options: Partial<ConnectionOptions> = {},
  ) {}

  get connection(): NatsConnection | null {
    return this.nc;
  }

  /** Registers a listener; when the connection is already up it hears `connected` at once (asynchronously). */
  listen(listener: NatsHubListener): () => void {
    this.listeners.add(listener);
    if (this.connected) queueMicrotask(() => this.listeners.has(listener) && listener.connected());
    return () => this.listeners.delete(listener);
  }

  /** Starts connecting in the background (once). */
  start(): void {
    if (this.started || this.closed) return;
    this.started = true;
    void this.connectLoop();
  }

  private async connectLoop(): Promise<void> {
    let logged = false;
    while (!this.closed && !this.nc) {
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
          // credentials, and an inbox of this device's own (deviceConnectOptions)
          ...this.options,
        });
        if (this.closed) {
          await nc.close();
          return;
        }
        this.nc = nc;
        this.connected = true;
        this.logger.log(`connected to NATS ${nc.getServer()}`);
        void this.watchStatus(nc);
        for (const l of [...this.listeners]) l.connected();
      } catch (e) {
        if (!logged) this.logger.warn(`NATS unreachable (${(e as Error).message}); serving locally and retrying`);
        logged = true;
        await sleep(1000, this.abort.signal);
      }
    }
  }

  private async watchStatus(nc: NatsConnection): Promise<void> {
    for await (const s of nc.status()) {
      if (s.type === Events.Disconnect) {
        this.connected = false;
        this.logger.warn('NATS disconnected; retrying');
        for (const l of [...this.listeners]) l.disconnected();
      } else if (s.type === Events.Error && s.data === 'PERMISSIONS_VIOLATION') {
        // this device's NATS user lacks a permission (deploy/nats/authorization.cjs): say which
        const p = (s as { permissionContext?: { operation: string; subject: string } }).permissionContext;
        this.logger.warn(
          `NATS refused ${p ? `${p.operation} on ${p.subject}` : 'an operation'}: permissions violation`,
        );
      } else if (s.type === Events.Reconnect) {
        this.connected = true;
        this.logger.log(`NATS reconnected to ${nc.getServer()}`);
        for (const l of [...this.listeners]) l.connected();
      }
    }
  }

  async close(): Promise<void> {
    this.closed = true;
    this.abort.abort();
    this.listeners.clear();
    const nc = this.nc;
    this.nc = null;
    this.connected = false;
    if (nc) await nc.close().catch(() => undefined);
  }
}

/**
 * A view of the shared connection for one user of it (a library's transport): it works as the
 * connection does, but remembers the subscriptions made through it, so that the user can end
 * exactly its own (`release`) without closing what the other libraries use.
 */
export class ScopedConnection {
  private readonly subscriptions = new Set<Subscription>();
  readonly connection: NatsConnection;

  constructor(readonly target: NatsConnection) {
    const subscriptions = this.subscriptions;
    this.connection = new Proxy(target, {
      get(t, prop) {
        if (prop === 'subscribe')
          return (subject: string, opts?: SubscriptionOptions) => {
            const sub = t.subscribe(subject, opts);
            subscriptions.add(sub);
            void sub.closed.then(() => subscriptions.delete(sub));
            return sub;
          };
        if (prop === 'close' || prop === 'drain') return () => Promise.reject(new Error('the connection is shared'));
        const v = Reflect.get(t, prop, t) as unknown;
        return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(t) : v;
      },
    });
  }

  /** Ends every subscription made through this view. */
  release(): void {
    for (const sub of this.subscriptions) {
      try {
        sub.unsubscribe();
      } catch {
        /* already closed */
      }
    }
    this.subscriptions.clear();
  }
}
