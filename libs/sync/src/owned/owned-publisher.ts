import { OWNED_MODELS } from '../models/registry';
import { splitBySize } from '../transport/batching';
import { LogPublisher } from '../transport/log-publisher';
import type { StateMessage } from '../transport/messages';
import type { OwnedRepository } from './owned.repository';
import { encodeCursor, endOfVersion, OwnedCursor, TOMBSTONE_KIND } from './cursor';

export const OWNED_PUBLISHED_KEY = 'owned_published';
const PAGE = 5000;
/** A backlog of at least this many rows written (and all of one model) travels as COPY text... */
const COPY_MIN_ROWS = 1000;
/** ...read this many at a time. */
const COPY_PAGE = 10_000;

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
  /**
   * Rows written and not yet published, as the writers counted them: a hint, never a promise. It
   * starts as if a backlog were waiting, so that the first drain after a start looks for one.
   */
  private unpublished = COPY_MIN_ROWS;

  /** A local write of `rows` rows committed. */
  written(rows: number): void {
    this.unpublished += rows;
  }

  /** Publishes one page of unpublished changes; returns whether more may be waiting. */
  async drainOnce(): Promise<boolean> {
    this.published ??= { value: await this.state.get(this.db, OWNED_PUBLISHED_KEY) };
    let limit = PAGE;
    let runAhead = false;
    if (this.unpublished >= COPY_MIN_ROWS) {
      const copied = await this.drainCopy();
      if (typeof copied === 'boolean') return copied;
      // the changes before a run that travels as COPY go as values; no run: no second look until more is written
      if (copied.before === null) this.unpublished = 0;
      else {
        limit = Math.min(PAGE, copied.before);
        runAhead = true;
      }
    }
    const published = this.published.value;
    // near the head (the live case) the page is one statement; a backlog keeps the planner on the index
    const changes = await this.repo.changesAfterJson(this.db, this.deviceId, published, limit, !this.nearHead);
    this.nearHead = changes.length < limit;
    // a run seen ahead stays worth a look once what comes before it is out
    this.unpublished = Math.max(runAhead ? COPY_MIN_ROWS : 0, this.unpublished - changes.length);
    if (changes.length === 0) return false;
    let from = published;
    // each change arrives as its wire JSON: its text sizes the batches and goes into the message as is
    const batches = [...splitBySize(changes, (c) => Buffer.byteLength(c.json) + 1, this.transport.maxPayload - 2048)];
    const drained = changes.length < limit;
    for (const [i, batch] of batches.entries()) {
      // the last message of a drain covers its whole version (writes commit whole, in version order)
      const lastCursor = batch[batch.length - 1].cursor;
      const to = drained && i === batches.length - 1 ? endOfVersion(lastCursor.split('|')[0]) : lastCursor;
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
      // the pre-serialised rows and tombstones
      const text = this.message(
        from,
        to,
        `"rows":[],"columns":[${columns.join(',')}],"tombstones":[${tombstones.join(',')}]`,
      );
      await this.sent(text, to);
      for (const [model, n] of countBy(batch, (c) => c.model)) this.metrics.sent.inc({ model }, n);
      from = to;
    }
    return changes.length === limit;
  }

  /**
   * Publishes a backlog of one model's rows as COPY text (docs/protocol.md, "state"): the keys of
   * the next changes, then, when they begin with a run of at least COPY_MIN_ROWS rows of one
   * model, that run's rows as Postgres formats them for COPY, both in one snapshot, so that the
   * rows are exactly the keys' (line i is key i). Returns whether more may be waiting; or, having
   * sent nothing, how many changes come `before` such a run (null: there is none in sight).
   */
  private async drainCopy(): Promise<boolean | { before: number | null }> {
    const from0 = this.published!.value;
    const read = await this.db
      .transaction()
      .setIsolationLevel('repeatable read')
      .execute(async (tx) => {
        const keys = await this.repo.changeKeysAfter(tx, this.deviceId, from0, COPY_PAGE);
        const start = firstLongRun(keys);
        if (start !== 0) return { before: start < 0 ? null : start };
        const model = OWNED_MODELS.find((m) => m.order === keys[0].kind)!;
        const run = runLength(keys, 0);
        const data = await this.repo.copyPage(tx, this.deviceId, model, from0, run);
        return { keys: keys.slice(0, run), model, data, rest: keys.length - run };
      });
    if (read.keys === undefined) return { before: read.before };
    const { keys, model, data, rest } = read;
    const ends = lineEnds(data);
    // one snapshot makes them equal; were they not, the rows go as values rather than never
    if (ends.length !== keys.length) return { before: null };
    // the last message covers its whole version only when nothing of the owner follows it
    const drained = rest === 0 && keys.length < COPY_PAGE;
    const budget = this.transport.maxPayload - 2048;
    let from = from0;
    let first = 0;
    while (first < keys.length) {
      // lines while their bytes fit (JSON escapes tabs and newlines: a fifth more, checked below)
      const start = first === 0 ? 0 : ends[first - 1];
      let last = first;
      while (last + 1 < keys.length && ends[last + 1] - start <= budget / 1.25) last++;
      let text: string;
      let to: string;
      for (;;) {
        const end = last === keys.length - 1;
        to = drained && end ? endOfVersion(keys[last].version) : encodeCursor(keys[last]);
        const copy = { model: model.name, rows: last - first + 1, data: data.toString('utf8', start, ends[last]) };
        text = this.message(from, to, `"rows":[],"columns":[],"tombstones":[],"copy":${JSON.stringify(copy)}`);
        if (Buffer.byteLength(text) <= budget || last === first) break;
        last = first + Math.floor((last - first) / 2);
      }
      await this.sent(text, to);
      this.metrics.sent.inc({ model: model.name }, last - first + 1);
      this.metrics.sentAsCopy.inc({ model: model.name }, last - first + 1);
      from = to;
      first = last + 1;
    }
    this.unpublished = Math.max(0, this.unpublished - keys.length);
    this.nearHead = drained;
    return !drained;
  }

  /** A StateMessage's JSON: the envelope, then `body`, its other fields already serialised. */
  private message(from: string | null, to: string, body: string): string {
    const envelope: Omit<StateMessage, 'rows' | 'columns' | 'tombstones'> = {
      v: 1,
      kind: 'state',
      library: this.libraryId,
      origin: this.deviceId,
      from,
      to,
    };
    return `${JSON.stringify(envelope).slice(0, -1)},${body}}`;
  }

  /** Sends one message of the stream up to `to`, and remembers that it went. */
  private async sent(text: string, to: string): Promise<void> {
    await this.send('state', text, to);
    await this.state.set(this.db, OWNED_PUBLISHED_KEY, to);
    this.published = { value: to };
  }
}

/** How many keys from `start` on are of the same kind. */
function runLength(keys: readonly OwnedCursor[], start: number): number {
  let end = start;
  while (end < keys.length && keys[end].kind === keys[start].kind) end++;
  return end - start;
}

/** Where the first run of at least COPY_MIN_ROWS rows of one model begins (tombstones never count), or -1. */
function firstLongRun(keys: readonly OwnedCursor[]): number {
  for (let i = 0; i < keys.length;) {
    const n = runLength(keys, i);
    if (keys[i].kind !== TOMBSTONE_KIND && n >= COPY_MIN_ROWS) return i;
    i += n;
  }
  return -1;
}

/** The offsets just past each newline of COPY text (a row's end: newlines in values are escaped). */
function lineEnds(data: Buffer): number[] {
  const ends: number[] = [];
  for (let i = data.indexOf(10); i !== -1; i = data.indexOf(10, i + 1)) ends.push(i + 1);
  return ends;
}

function countBy<T>(items: readonly T[], key: (item: T) => string): Map<string, number> {
  const out = new Map<string, number>();
  for (const item of items) out.set(key(item), (out.get(key(item)) ?? 0) + 1);
  return out;
}
