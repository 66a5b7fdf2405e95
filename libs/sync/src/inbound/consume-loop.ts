import { Logger } from '@nestjs/common';
import type { JsMsg } from 'nats';
import { backoffDelay, sleep } from '../transport/backoff';
import { isNotFound, JetStreamTransport } from '../transport/jetstream.transport';
import type { Decoded } from './decode';

const FETCH_BATCH = 128;
/** A pull waits this long for messages while they keep coming (they are handed over as they arrive)... */
const FETCH_EXPIRES_MS = 1000;
/** ...and this long once a pull came back empty: an idle library costs one pull per this period. */
const IDLE_FETCH_EXPIRES_MS = 10_000;

/** A backlog of one fetch is live traffic, not catching up. */
export const LIVE_BACKLOG = FETCH_BATCH;

/**
 * Pulls this device's durable consumer while linked, decoding the next message while the current
 * one is handled, backing off after transient failures. A missing stream or consumer asks for a
 * relink.
 */
export class ConsumeLoop {
  private readonly logger = new Logger('ConsumeLoop');
  private running: Promise<void> | null = null;
  private stopped = false;
  private readonly abort = new AbortController();

  constructor(
    private readonly transport: JetStreamTransport,
    private readonly linked: () => boolean,
    private readonly decode: (m: JsMsg) => Decoded,
    private readonly receive: (m: JsMsg, decoded: Decoded) => Promise<boolean>,
    private readonly relink: () => void,
  ) {}

  start(): void {
    this.running ??= this.run();
  }

  private async run(): Promise<void> {
    let attempt = 0;
    let idle = false;
    while (!this.stopped) {
      if (!this.transport.connected || !this.linked()) {
        await sleep(200, this.abort.signal);
        continue;
      }
      try {
        let transient = false;
        const n: number = await this.transport.fetch(
          FETCH_BATCH,
          idle ? IDLE_FETCH_EXPIRES_MS : FETCH_EXPIRES_MS,
          this.decode,
          async (m, decoded) => {
            if (!(await this.receive(m, decoded))) transient = true;
          },
          this.abort.signal,
        );
        idle = n === 0;
        if (transient) await sleep(backoffDelay(attempt++), this.abort.signal);
        else attempt = 0;
      } catch (e) {
        if (this.stopped) break;
        if (isNotFound(e)) {
          this.logger.warn(`stream or consumer missing (${(e as Error).message}); recreating`);
          this.relink();
        }
        await sleep(backoffDelay(attempt++, 200, 5000), this.abort.signal);
      }
    }
  }

  /** Stops after the message in hand (the rest stays unacknowledged and is redelivered). */
  async stop(): Promise<void> {
    this.stopped = true;
    this.abort.abort();
    await this.running;
  }
}
