import { splitBySize } from '../transport/batching';
import { LogPublisher } from '../transport/log-publisher';
import type { SharedMessage } from '../transport/messages';
import type { SharedRepository } from './shared.repository';

export const SHARED_PUBLISHED_KEY = 'shared_published';
const PAGE = 2000;

/**
 * Sends the unpublished rows of this device's change log (the outbox), oldest first. A crash
 * between the publish and the mark repeats the message: Nats-Msg-Id deduplicates it and the merge
 * is idempotent, so nothing is lost and nothing is applied twice.
 */
export class SharedPublisher extends LogPublisher<SharedRepository> {
  async drainOnce(): Promise<boolean> {
    const rows = await this.repo.unpublished(this.db, PAGE);
    if (rows.length === 0) return false;
    let prev = await this.state.get(this.db, SHARED_PUBLISHED_KEY);
    for (const batch of splitBySize(
      rows,
      (r) => Buffer.byteLength(JSON.stringify(r)) + 1,
      this.transport.maxPayload - 2048,
    )) {
      const last = batch[batch.length - 1].hlc;
      const msg: SharedMessage = {
        v: 1,
        kind: 'shared',
        library: this.libraryId,
        origin: this.deviceId,
        prev,
        changes: batch,
      };
      await this.send('shared', JSON.stringify(msg), last);
      await this.db.transaction().execute(async (tx) => {
        await this.repo.markPublished(tx, last);
        await this.state.set(tx, SHARED_PUBLISHED_KEY, last);
      });
      for (const c of batch) this.metrics.sent.inc({ model: c.model });
      prev = last;
    }
    return rows.length === PAGE;
  }
}
