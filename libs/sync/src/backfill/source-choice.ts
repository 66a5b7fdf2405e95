import { Logger } from '@nestjs/common';
import type { WatermarksReply } from '../rpc/protocol';
import { backoffDelay, sleep } from '../transport/backoff';
import type { BackfillService } from './backfill';

const logger = new Logger('Backfill');

/** Complete peers first, then the ones holding the most rows. */
export function rankSources(peers: WatermarksReply[]): WatermarksReply[] {
  return [...peers].sort(
    (a, b) => Number(a.phase === 'backfilling') - Number(b.phase === 'backfilling') || b.rows - a.rows,
  );
}

/**
 * Pulls the library from the best online peer, switching peers when one fails, until it is done
 * or `signal` aborts. With no peer online and nothing pulled yet, this is the library's first
 * device: it is complete as it is.
 */
export async function backfillFromBestPeer(
  backfill: BackfillService,
  discover: () => Promise<WatermarksReply[]>,
  signal: AbortSignal,
): Promise<void> {
  for (let attempt = 0; !signal.aborted; attempt++) {
    let peers: WatermarksReply[] = [];
    try {
      peers = await discover();
    } catch (e) {
      logger.warn(`peer discovery failed: ${(e as Error).message}`);
    }
    if (peers.length === 0 && !(await backfill.hasStarted())) {
      logger.log("no peer online and nothing pulled yet: this is the library's first device");
      await backfill.finishEmpty();
      return;
    }
    for (const peer of rankSources(peers)) {
      try {
        logger.log(`backfilling from ${peer.name} (${peer.deviceId}): ${peer.rows} rows`);
        await backfill.runFrom(peer);
        return;
      } catch (e) {
        if (signal.aborted) return;
        logger.warn(`backfill from ${peer.name} interrupted (${(e as Error).message}); trying another peer`);
      }
    }
    await sleep(backoffDelay(attempt, 500, 5000), signal);
  }
}
