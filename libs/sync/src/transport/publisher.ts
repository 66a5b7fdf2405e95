import { Logger } from '@nestjs/common';
import { backoffDelay, sleep } from './backoff';

/**
 * The loop shared by both publishers: woken by local writes and by (re)connection, it drains what
 * is unpublished, retrying with backoff until it succeeds or the engine stops. A change on an idle
 * device leaves at once; while changes keep coming, drains are at least the coalescing window
 * apart, so that they travel in pages rather than one message each. One drain runs at a time; a
 * wake-up during a drain schedules another.
 */
export class PublishLoop {
  private readonly logger: Logger;
  private timer: NodeJS.Timeout | null = null;
  /** A drain is scheduled for the next turn of the event loop (see wake). */
  private startsSoon = false;
  private running: Promise<void> | null = null;
  private again = false;
  private stopped = false;
  private readonly abort = new AbortController();
  /** When the last drain started (performance.now()); the window counts from there. */
  private lastDrainAt = -Infinity;

  constructor(
    name: string,
    private readonly windowMs: number,
    private readonly drain: () => Promise<boolean>,
    private readonly ready: () => boolean,
    private readonly onFailure: () => void,
  ) {
    this.logger = new Logger(name);
  }

  /** Schedules a drain: at once when idle (or with immediate), else when the window since the last one ends. */
  wake(immediate = false): void {
    if (this.stopped) return;
    if (this.running) {
      this.again = true;
      return;
    }
    if (this.timer || this.startsSoon) return;
    const delay = immediate ? 0 : Math.max(0, this.lastDrainAt + this.windowMs - performance.now());
    if (delay === 0) {
      // idle: the drain starts right after the code that woke it (a timer would add a millisecond)
      this.startsSoon = true;
      setImmediate(() => {
        this.startsSoon = false;
        this.start();
      });
    } else
      this.timer = setTimeout(() => {
        this.timer = null;
        this.start();
      }, delay);
  }

  private start(): void {
    if (this.stopped) return;
    if (this.running) {
      this.again = true;
      return;
    }
    this.lastDrainAt = performance.now();
    this.running = this.run().finally(() => {
      this.running = null;
      if (this.again) {
        this.again = false;
        this.wake();
      }
    });
  }

  private async run(): Promise<void> {
    let attempt = 0;
    while (!this.stopped) {
      if (!this.ready()) return; // woken again on (re)connection
      try {
        const more = await this.drain();
        attempt = 0;
        if (!more) return;
      } catch (e) {
        this.onFailure();
        const delay = backoffDelay(attempt++);
        if (attempt === 1 || attempt % 10 === 0)
          this.logger.warn(`publish failed (${(e as Error).message}); retrying in ${delay} ms`);
        await sleep(delay, this.abort.signal);
      }
    }
  }

  /** Stops waking; waits for a drain in progress (its state is in the database either way). */
  async stop(): Promise<void> {
    this.stopped = true;
    this.abort.abort();
    if (this.timer) clearTimeout(this.timer);
    await this.running;
  }
}
