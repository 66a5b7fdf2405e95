import { Inject, Injectable } from '@nestjs/common';
import { BaseRpcContext, CustomTransportStrategy, Server } from '@nestjs/microservices';
import type { Msg, NatsConnection } from 'nats';
import { lastValueFrom } from 'rxjs';
import { RejectedMessageError } from '../errors';
import { replyContext, type JetStreamTransport } from '../transport/jetstream.transport';
import type { Opened } from '../trust/library-trust';
import { SYNC_OPTIONS, type SyncOptions } from '../sync.options';
import { RawJson, RpcReply } from './protocol';

/** What a handler gets besides the request: the subject, the reply size limit, and who asks. */
export class NatsRpcContext extends BaseRpcContext<[subject: string, maxPayload: number, signer: string]> {
  getSubject(): string {
    return this.args[0];
  }
  /** Largest reply the server accepts (with room for headers and the seal). */
  getMaxPayload(): number {
    return this.args[1];
  }
  /** The member device whose signature the request carries. */
  getSigner(): string {
    return this.args[2];
  }
}

/**
 * Serves the application's @MessagePattern handlers to the library's peers over the device's own
 * NATS connection (the JetStreamTransport's; no second connection): a handler for `pattern` on
 * sync.<lib>.rpc.<device>.<pattern>, and also on sync.<lib>.rpc.all.<pattern> when its extras
 * say EVERY_DEVICE. Requests and replies are the JSON of protocol.ts, sealed (LibraryTrust): a
 * request that is not a member's gets no answer, and a reply is bound to the request it answers.
 *
 * The device starts without NATS: listen() returns at once. The handlers are subscribed as soon
 * as both the application listens and the engine has linked the transport (serve(), after every
 * (re)connection), whichever happens first; as before, not earlier than the first link. The nats
 * client resubscribes after a reconnect itself, so the handlers are subscribed once per connection.
 */
@Injectable()
export class NatsRpcServer extends Server implements CustomTransportStrategy {
  override transportId = Symbol('NatsRpcServer');
  private listening = false;
  private warned = false;
  private transport: JetStreamTransport | null = null;
  /** The connection the handlers are subscribed on. */
  private servedOn: NatsConnection | null = null;

  constructor(@Inject(SYNC_OPTIONS) private readonly options: SyncOptions) {
    super();
  }

  listen(callback: (...optionalParams: unknown[]) => void): void {
    this.listening = true;
    this.bind();
    callback();
  }

  /** The engine's transport is connected and linked: answer peers on its connection. */
  serve(transport: JetStreamTransport): void {
    this.transport = transport;
    if (!this.listening && !this.warned) {
      this.warned = true;
      this.logger.warn(
        'peers get no answers until the application connects NatsRpcServer (app.connectMicroservice({ strategy }))',
      );
    }
    this.bind();
  }

  /**
   * Stops subscribing. The subscriptions end with the transport's connection, which the engine
   * closes right after (application shutdown hooks run after the microservices close), so peers
   * are answered exactly as long as before this server existed.
   */
  close(): void {
    this.listening = false;
    this.warned = true; // closing, not forgotten
  }

  on(): never {
    throw new Error('NatsRpcServer has no events');
  }

  unwrap<T>(): T {
    if (!this.servedOn) throw new Error('NatsRpcServer is not serving yet');
    return this.servedOn as T;
  }

  private bind(): void {
    const connection = this.transport?.connection;
    if (!this.listening || !connection || this.servedOn === connection) return;
    const subjects = this.transport!.subjects;
    for (const [pattern, handler] of this.getHandlers()) {
      const names = [subjects.rpc(this.options.deviceId, pattern)];
      if (handler.extras?.everyDevice) names.push(subjects.rpcAll(pattern));
      for (const subject of names)
        connection.subscribe(subject, {
          callback: (err, msg) => {
            if (!err) this.handle(pattern, msg).catch((e) => this.logger.error(e));
          },
        });
    }
    this.servedOn = connection;
  }

  private async handle(pattern: string, msg: Msg): Promise<void> {
    if (!msg.reply) return;
    const transport = this.transport!;
    // only a member's sealed request is answered; anything else gets no reply at all
    let opened: Opened;
    try {
      opened = transport.open(msg.subject, msg.data);
    } catch (e) {
      if (e instanceof RejectedMessageError) transport.onRefused(msg.subject, e, msg.data);
      return;
    }
    // the reply goes under the request's key epoch: a member that missed a rotation can read it
    const seal = (text: string) =>
      transport.seal(replyContext(msg.subject, opened.nonce), Buffer.from(text), opened.keyId).data;
    let request: unknown;
    try {
      request = JSON.parse(opened.plaintext.toString('utf8'));
    } catch {
      reply(msg, { ok: false, error: 'request is not JSON' }, seal);
      return;
    }
    const handler = this.getHandlerByPattern(pattern);
    const context = new NatsRpcContext([msg.subject, transport.maxPayload - 512, opened.signer]);
    await this.onProcessingStartHook(this.transportId, context, async () => {
      let body: RpcReply<unknown>;
      try {
        if (!handler) throw new Error(`no handler for ${pattern}`);
        body = { ok: true, result: await lastValueFrom(this.transformToObservable(await handler(request, context))) };
      } catch (e) {
        body = { ok: false, error: errorMessage(e) };
      }
      this.onProcessingEndHook?.(this.transportId, context);
      reply(msg, body, seal);
    });
  }
}

/** Sends a sealed reply; one that cannot be sent (e.g. too large) is answered with an error instead. */
function reply(msg: Msg, body: RpcReply<unknown>, seal: (text: string) => Uint8Array): void {
  try {
    const text =
      body.ok && body.result instanceof RawJson ? `{"ok":true,"result":${body.result.text}}` : JSON.stringify(body);
    msg.respond(seal(text));
  } catch (e) {
    // say so rather than leave the requester waiting
    try {
      msg.respond(seal(JSON.stringify({ ok: false, error: `reply failed: ${(e as Error).message}` })));
    } catch {
      /* the connection is gone; the requester times out */
    }
  }
}

/** The message a handler failed with (what PeerRpcErrorFilter passes on unchanged). */
function errorMessage(e: unknown): string {
  if (e instanceof Error) return e.message;
  if (typeof e === 'string') return e;
  const message = (e as { message?: unknown } | null)?.message;
  return typeof message === 'string' ? message : String(e);
}
