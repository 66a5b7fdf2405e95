import type { SyncStatus } from '@lib/sync';

/**
 * How the status page shows values, on the server and (their source, status-page.ts) in the
 * browser: each function stands alone, with no import and nothing from around it but the others.
 */

export type { SyncStatus };

export interface BackfillProgressView {
  source: string | null;
  items: { done: number; total: number | null }[];
}

export interface BackfillBar {
  /** The progress element's value; null: indeterminate. */
  value: number | null;
  max: number;
  text: string;
}

/** 850 ms, 4.2 s, 3 min, 1.5 h; '-' for null. */
export function formatDuration(ms: number | null): string {
  if (ms === null || !Number.isFinite(ms)) return '-';
  const v = Math.max(0, ms);
  if (v < 1000) return `${Math.round(v)} ms`;
  if (v < 60_000) return `${(v / 1000).toFixed(1)} s`;
  if (v < 3_600_000) return `${Math.round(v / 60_000)} min`;
  return `${(v / 3_600_000).toFixed(1)} h`;
}

/** A clock stamp's wall-clock part in UTC, with its logical counter: "2025-01-02 10:11:12.345 UTC +3". */
export function clockTime(hlc: string): string {
  const m = /^(\d{15})-(\d{6})-/.exec(hlc ?? '');
  if (!m) return '-';
  const wall = new Date(Number(m[1])).toISOString().replace('T', ' ').replace('Z', ' UTC');
  return Number(m[2]) > 0 ? `${wall} +${Number(m[2])}` : wall;
}

/** The first block of a uuid: enough to tell devices apart on one page. */
export function shortId(id: string): string {
  return String(id).slice(0, 8);
}

/** The backfill bar: rows pulled of the rows to pull, full once the phase is past backfilling. */
export function backfillView(
  phase: string,
  backfill: BackfillProgressView | null,
  names: Record<string, string>,
): BackfillBar {
  const running = phase === 'backfilling' || phase === 'uninitialized';
  if (!backfill || !backfill.source) {
    if (running) return { value: null, max: 1, text: phase === 'backfilling' ? 'looking for a peer' : 'not started' };
    return { value: 1, max: 1, text: 'complete (nothing to pull in this run)' };
  }
  let done = 0;
  let total = 0;
  let unknown = false;
  for (const i of backfill.items) {
    done += i.done;
    if (i.total === null) unknown = true;
    else total += Math.max(i.total, i.done);
  }
  const from = names[backfill.source] ?? shortId(backfill.source);
  if (!running) return { value: 1, max: 1, text: `complete: ${done} rows from ${from}` };
  const max = Math.max(total, done, 1);
  const percent = Math.floor((done * 100) / max);
  return {
    value: done,
    max,
    text: `${done} of ${unknown ? 'at least ' : ''}${total} rows from ${from} (${percent} %)`,
  };
}
