import { Logger } from '@nestjs/common';
import type { SyncOptions, SyncPhase } from './sync.options';

/** Placeholder until the transport lands: serves the phase. */
export class SyncEngine {
  private readonly logger = new Logger('SyncEngine');
  phase: SyncPhase;

  constructor(private readonly options: SyncOptions) {
    this.phase = options.enabled ? 'uninitialized' : 'disabled';
  }

  async start(): Promise<void> {
    if (!this.options.enabled) return;
    this.phase = 'ready';
    this.logger.log('sync started');
  }

  async stop(): Promise<void> {
    /* nothing yet */
  }
}
