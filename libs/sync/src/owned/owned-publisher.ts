import { splitBySize } from '../transport/batching';
import { LogPublisher } from '../transport/log-publisher';
import type { StateMessage } from '../transport/messages';
import type { OwnedRepository } from './owned.repository';
import { endOfVersion } from './cursor';

export const OWNED_PUBLISHED_KEY = 'owned_published';
const PAGE = 5000;

/**
 * Broadcasts this device's owned rows and tombstones in cursor order. The rows are the log, so
 * changes to one record within the window coalesce by themselves (a page reads its latest state),
 * and a crash before the published cursor is saved only repeats messages (deduplicated by
 * Nats-Msg-Id, and idempotent to apply).
 */
export class OwnedPublisher extends LogPublisher<OwnedRepository> {
  /** Publishes one page of unpublished changes; returns whether more may be waiting. */
  async drainOnce(): Promise<boolean> {
    const published = await this.state.get(this.db, OWNED_PUBLISHED_KEY);
    const changes = await this.repo.changesAfter(this.db, this.deviceId, published, PAGE);
    if (changes.length === 0) return false;
    let from = published;
    // each change is serialised once: its text sizes the batches and goes into the message as is
    const encoded = changes.map((c) => ({
      change: c,
      json: JSON.stringify(c.type === 'row' ? { model: c.model, row: c.row } : c.tombstone),
    }));
    const batches = [...splitBySize(encoded, (e) => Buffer.byteLength(e.json) + 1, this.transport.maxPayload - 2048)];
    const drained = changes.length < PAGE;
    for (const [i, batch] of batches.entries()) {
      // the last message of a drain covers its whole version (writes commit whole, in version order)
      const lastCursor = batch[batch.length - 1].change.cursor;
      const to = drained && i === batches.length - 1 ? endOfVersion(lastCursor.split('|')[0]) : lastCursor;
      const envelope: Omit<StateMessage, 'rows' | 'tombstones'> = {
        v: 1,
        kind: 'state',
        library: this.libraryId,
        origin: this.deviceId,
        from,
        to,
      };
      const rows = batch.filter((e) => e.change.type === 'row').map((e) => e.json);
      const tombstones = batch.filter((e) => e.change.type === 'tombstone').map((e) => e.json);
      // the StateMessage's JSON: the envelope, then the pre-serialised rows and tombstones
      const text = `${JSON.stringify(envelope).slice(0, -1)},"rows":[${rows.join(',')}],"tombstones":[${tombstones.join(',')}]}`;
      await this.send('state', text, to);
      await this.state.set(this.db, OWNED_PUBLISHED_KEY, to);
      for (const [model, n] of countBy(batch, (e) => (e.change.type === 'row' ? e.change.model : 'tombstones')))
        this.metrics.sent.inc({ model }, n);
      from = to;
    }
    return changes.length === PAGE;
  }
}

function countBy<T>(items: readonly T[], key: (item: T) => string): Map<string, number> {
  const out = new Map<string, number>();
  for (const item of items) out.set(key(item), (out.get(key(item)) ?? 0) + 1);
  return out;
}
