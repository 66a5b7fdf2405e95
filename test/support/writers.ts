import { randomUUID } from 'node:crypto';
import type { Api } from './api';
import { HttpResult, LONG, waitFor } from './device-harness';
import { entryInput } from './fixtures';

/**
 * Writes in volume through the API: background writers whose acknowledged (2xx) results are
 * recorded and checked afterwards, and requests run a few at a time.
 */

/** A device whose paged lists the test reads. */
export interface ListingApi extends Api {
  list<T = any>(path: string): Promise<T[]>;
}

export interface WriterStats {
  /** Entry ids of acknowledged batches. */
  entries: string[];
  /** Ids of acknowledged tag creates. */
  tags: string[];
  /** Acknowledged metadata notes per entry id (one write per entry). */
  notes: Map<string, string>;
  batches: number;
  failures: number;
}

/**
 * Writes on `p` in a loop until stopped: a batch of entries, a tag, a metadata PUT on an entry of
 * the batch. Failed requests (device killed, 5xx) are counted and the loop goes on; only what
 * the API acknowledged is recorded.
 */
export function startWriter(p: Api, locationId: string, o: { batch?: number; label?: string } = {}) {
  const stats: WriterStats = { entries: [], tags: [], notes: new Map(), batches: 0, failures: 0 };
  const batch = o.batch ?? 100;
  const label = o.label ?? 'w';
  let stopped = false;
  let i = 0;
  const attempt = async <T>(fn: () => Promise<HttpResult<T>>): Promise<HttpResult<T> | null> => {
    try {
      const r = await fn();
      if (r.status >= 200 && r.status < 300) return r;
      if (r.status < 500) throw new Error(`unexpected ${r.status}: ${JSON.stringify(r.body).slice(0, 300)}`);
    } catch (e) {
      if (/unexpected \d+/.test((e as Error).message)) throw e;
    }
    stats.failures++;
    // the device is down: a short pause between attempts, not a synchronisation
    await new Promise((r) => setTimeout(r, 50));
    return null;
  };
  const loop = (async () => {
    while (!stopped) {
      const n = i++;
      const items = Array.from({ length: batch }, (_, k) => entryInput(locationId, n * batch + k));
      const batchDone = await attempt(() => p.req('POST', '/entries/batch', { items }));
      if (batchDone) {
        stats.entries.push(...items.map((e) => e.id));
        stats.batches++;
      }
      const tagId = randomUUID();
      if (await attempt(() => p.req('POST', '/tags', { id: tagId, name: `${label}-tag-${n}`, color: 'red' })))
        stats.tags.push(tagId);
      if (batchDone) {
        // one attempt per entry: a lost response cannot leave a later value than the one recorded
        const target = items[0].id;
        const notes = `${label}-note-${n}`;
        if (await attempt(() => p.req('PUT', `/entries/${target}/metadata`, { notes }))) stats.notes.set(target, notes);
      }
    }
  })();
  return {
    stats,
    /** Waits until at least n more batches than now have been acknowledged. */
    async progress(n: number, timeoutMs = LONG): Promise<void> {
      const goal = stats.batches + n;
      await waitFor(`${label}: ${goal} acknowledged batches`, () => stats.batches >= goal, timeoutMs, 20);
    },
    async stop(): Promise<WriterStats> {
      stopped = true;
      await loop;
      return stats;
    },
  };
}

/** Checks that every acknowledged write of `stats` is readable on `p`. */
export async function expectAcknowledgedWrites(p: ListingApi, stats: WriterStats): Promise<void> {
  const entries = new Set((await p.list<{ id: string }>('/entries')).map((e) => e.id));
  const missingEntries = stats.entries.filter((id) => !entries.has(id));
  const tags = new Set((await p.list<{ id: string }>('/tags')).map((t) => t.id));
  const missingTags = stats.tags.filter((id) => !tags.has(id));
  const notes = new Map(
    (await p.list<{ entryId: string; notes: string | null }>('/metadata')).map((m) => [m.entryId, m.notes]),
  );
  const wrongNotes = [...stats.notes].filter(([id, n]) => notes.get(id) !== n);
  expect({
    url: p.url,
    missingEntries: missingEntries.length,
    missingTags: missingTags.length,
    wrongNotes: wrongNotes.length,
  }).toEqual({
    url: p.url,
    missingEntries: 0,
    missingTags: 0,
    wrongNotes: 0,
  });
}

/** Runs fn over items with at most `width` in flight. */
export async function parallel<T>(
  items: readonly T[],
  width: number,
  fn: (item: T, i: number) => Promise<unknown>,
): Promise<void> {
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const i = next++;
      await fn(items[i], i);
    }
  };
  await Promise.all(Array.from({ length: Math.min(width, items.length) }, worker));
}
