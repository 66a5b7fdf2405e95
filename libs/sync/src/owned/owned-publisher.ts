import { OWNED_MODELS } from '../models/registry';
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
  /** The published cursor (this publisher is its only writer): read once, then kept here. */
  private published: { value: string | null } | null = null;
  /** Whether the last drain left nothing behind: the next one reads near the head. */
  private nearHead = false;

  /** Publishes one page of unpublished changes; returns whether more may be waiting. */
  async drainOnce(): Promise<boolean> {
    this.published ??= { value: await this.state.get(this.db, OWNED_PUBLISHED_KEY) };
    const published = this.published.value;
    // near the head (the live case) the page is one statement; a backlog keeps the planner on the index
    const changes = await this.repo.changesAfterJson(this.db, this.deviceId, published, PAGE, !this.nearHead);
    this.nearHead = changes.length < PAGE;
    if (changes.length === 0) return false;
    let from = published;
    // each change arrives as its wire JSON: its text sizes the batches and goes into the message as is
    const batches = [...splitBySize(changes, (c) => Buffer.byteLength(c.json) + 1, this.transport.maxPayload - 2048)];
    const drained = changes.length < PAGE;
    for (const [i, batch] of batches.entries()) {
      // the last message of a drain covers its whole version (writes commit whole, in version order)
      const lastCursor = batch[batch.length - 1].cursor;
      const to = drained && i === batches.length - 1 ? endOfVersion(lastCursor.split('|')[0]) : lastCursor;
      const envelope: Omit<StateMessage, 'rows' | 'columns' | 'tombstones'> = {
        v: 1,
        kind: 'state',
        library: this.libraryId,
        origin: this.deviceId,
        from,
        to,
      };
      // rows as values in column order, grouped by model (in the registry's order: parents first)
      const groups = new Map<string, string[]>();
      const tombstones: string[] = [];
      for (const c of batch) {
        if (c.type === 'tombstone') tombstones.push(c.json);
        else {
          const group = groups.get(c.model);
          if (group) group.push(c.json);
          else groups.set(c.model, [c.json]);
        }
      }
      const columns = OWNED_MODELS.filter((m) => groups.has(m.name)).map(
        (m) => `{"model":${JSON.stringify(m.name)},"values":[${groups.get(m.name)!.join(',')}]}`,
      );
      // the StateMessage's JSON: the envelope, then the pre-serialised rows and tombstones
      const text = `${JSON.stringify(envelope).slice(0, -1)},"rows":[],"columns":[${columns.join(',')}],"tombstones":[${tombstones.join(',')}]}`;
      await this.send('state', text, to);
      await this.state.set(this.db, OWNED_PUBLISHED_KEY, to);
      this.published = { value: to };
      for (const [model, n] of countBy(batch, (c) => c.model)) this.metrics.sent.inc({ model }, n);
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
