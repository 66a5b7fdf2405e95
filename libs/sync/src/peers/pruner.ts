import { Logger } from '@nestjs/common';
import type { Db } from '@lib/db';
import type { SyncMetrics } from '../metrics';
import { collectTombstones } from '../owned/owned.repository';
import type { SharedRepository } from '../shared/shared.repository';
import type { DevicesRepository } from '../store/devices.repository';

/**
 * Frees what every active peer has acknowledged (docs/design.md "Acknowledgements, pruning and tombstone collection"): our shared change log
 * up to the smallest acknowledgement, and owned tombstones every other device has seen past. Runs
 * after acknowledgements and on a timer; never twice at once.
 */
export class Pruner {
  private readonly logger = new Logger('Pruner');
  private running = false;
  private timer: NodeJS.Timeout | null = null;

  constructor(
    private readonly db: Db,
    private readonly devices: DevicesRepository,
    private readonly shared: SharedRepository,
    private readonly metrics: SyncMetrics,
  ) {}

  start(intervalMs: number): void {
    this.timer = setInterval(() => void this.pruneAcknowledged(), intervalMs);
  }

  /** Returns how many change-log rows were deleted. */
  async pruneAcknowledged(): Promise<number> {
    if (this.running) return 0;
    this.running = true;
    try {
      const upTo = await this.devices.minimumSharedAck(this.db);
      const n = upTo ? await this.shared.pruneUpTo(this.db, upTo) : 0;
      if (n) this.metrics.pruned.inc(n);
      const horizons = await this.devices.tombstoneHorizons(this.db);
      await collectTombstones(this.db, horizons);
      this.devices.noteCollected(horizons);
      this.metrics.logSize.set(await this.shared.logSize(this.db));
      return n;
    } catch (e) {
      this.logger.warn(`pruning failed: ${(e as Error).message}`);
      return 0;
    } finally {
      this.running = false;
    }
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
  }
}
