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

/** How long a device that has heard of other devices keeps asking them before it starts alone. */
export const KNOWN_PEERS_GRACE_MS = 60_000;

/**
 * Pulls the library from the best online peer, switching peers when one fails, until it is done
 * or `signal` aborts. With no peer answering and nothing pulled yet, this is the library's first
 * device: it is complete as it is. But a device that has already heard of other devices (their
 * heartbeats or membership: `knownPeers`) is joining a library that exists, whose peers were only
 * slow to answer: it keeps asking for up to KNOWN_PEERS_GRACE_MS before starting alone (catch-up
 * then brings their data when they answer).
 */
export async function backfillFromBestPeer(
  backfill: BackfillService,
  discover: () => Promise<WatermarksReply[]>,
  signal: AbortSignal,
  knownPeers: () => Promise<boolean> = async () => false,
  graceMs = KNOWN_PEERS_GRACE_MS,
): Promise<void> {
  const started = Date.now();
  for (let attempt = 0; !signal.aborted; attempt++) {
    let peers: WatermarksReply[] = [];
    try {
      peers = await discover();
    } catch (e) {
      logger.warn(`peer discovery failed: ${(e as Error).message}`);
    }
    if (peers.length === 0 && !(await backfill.hasStarted())) {
      if (Date.now() - started < graceMs && (await knownPeers().catch(() => false))) {
        if (attempt === 0) logger.log('other devices of this library are known but none answered yet: asking again');
        await sleep(backoffDelay(attempt, 500, 5000), signal);
        continue;
      }
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
