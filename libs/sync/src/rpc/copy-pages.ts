import type { OwnedModel } from '../models/registry';
import { encodeCursor } from '../owned/cursor';

/** A page of owned.copy ready to send: its COPY text as a JSON string, and where it ends. */
export interface CopyPage {
  json: string;
  rows: number;
  last: string | null;
  done: boolean;
}

type Read = (owner: string, model: OwnedModel, after: string | null, limit: number) => Promise<Buffer>;

/** The rows of COPY text: its newlines (a newline inside a value is escaped). */
function countLines(data: Buffer): number {
  let n = 0;
  for (let i = data.indexOf(10); i >= 0; i = data.indexOf(10, i + 1)) n++;
  return n;
}

/**
 * The page server of owned.copy. A page is as many rows as fit in a reply: the rows asked for
 * follow the bytes per row seen so far, so that the page is read once and seldom cut. A backfill
 * asks for the page after the one it just got, so that page is read ahead while the previous one
 * travels (a few, keyed by what they follow; one that is not asked for soon is dropped).
 */
export class CopyPages {
  /** JSON bytes per row seen on the last page of each model. */
  private readonly bytesPerRow = new Map<string, number>();
  private readonly ahead = new Map<string, { page: Promise<CopyPage>; at: number }>();

  constructor(
    private readonly read: Read,
    private readonly maxRows: number,
    private readonly keepMs = 30_000,
    private readonly maxAhead = 4,
  ) {}

  async take(owner: string, model: OwnedModel, after: string | null, budget: number): Promise<CopyPage> {
    const key = `${owner}|${model.name}|${after}`;
    const held = this.ahead.get(key);
    this.ahead.delete(key);
    if (held) {
      const page = await held.page.catch(() => null);
      // read for a budget at least this large: still fits
      if (page && Buffer.byteLength(page.json) <= budget) return page;
    }
    return this.load(owner, model, after, budget);
  }

  prefetch(owner: string, model: OwnedModel, after: string, budget: number): void {
    const now = Date.now();
    for (const [k, v] of this.ahead) if (now - v.at > this.keepMs) this.ahead.delete(k);
    while (this.ahead.size >= this.maxAhead) this.ahead.delete(this.ahead.keys().next().value as string);
    const page = this.load(owner, model, after, budget);
    page.catch(() => undefined); // a failed read ahead is read again when asked for
    this.ahead.set(`${owner}|${model.name}|${after}`, { page, at: now });
  }

  private async load(owner: string, model: OwnedModel, after: string | null, budget: number): Promise<CopyPage> {
    const per = this.bytesPerRow.get(model.name);
    const limit = per ? Math.max(1, Math.min(this.maxRows, Math.floor((budget * 0.9) / per))) : this.maxRows;
    const all = await this.read(owner, model, after, limit);
    let data = all;
    let json = JSON.stringify(data.toString('utf8'));
    let size = Buffer.byteLength(json);
    const allRows = countLines(all);
    if (allRows > 0) this.bytesPerRow.set(model.name, size / allRows);
    // cut at a row's end while it is larger than a reply may be
    while (size > budget) {
      const end = data.lastIndexOf(10, Math.floor((data.length * budget) / size) - 1);
      if (end < 0) break; // one row larger than a reply: sent as it is, and refused by the server
      data = data.subarray(0, end + 1);
      json = JSON.stringify(data.toString('utf8'));
      size = Buffer.byteLength(json);
    }
    const rows = data === all ? allRows : countLines(data);
    let last: string | null = null;
    if (rows > 0) {
      const start = data.lastIndexOf(10, data.length - 2) + 1;
      const values = data
        .subarray(start, data.length - 1)
        .toString('utf8')
        .split('\t');
      last = encodeCursor({
        version: values[model.columns.indexOf('version')],
        kind: model.order,
        id: values[model.columns.indexOf('id')],
      });
    }
    return { json, rows, last, done: data === all && allRows < limit };
  }
}
