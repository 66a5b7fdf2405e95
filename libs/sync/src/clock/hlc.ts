/**
 * Hybrid logical clock (Kulkarni et al., 2014), pure functions only.
 * A stamp is (physical ms, logical counter, device id); its text form sorts in clock order:
 * 15 decimal digits of milliseconds, 6 of counter, then the device id as the final tie-break.
 */
export interface Hlc {
  readonly physical: number;
  readonly logical: number;
  readonly node: string;
}

const PHYSICAL_DIGITS = 15;
const LOGICAL_DIGITS = 6;
const MAX_LOGICAL = 10 ** LOGICAL_DIGITS - 1;
const HLC_TEXT = /^(\d{15})-(\d{6})-([0-9a-f-]{1,64})$/;

export const HLC_ZERO: Hlc = { physical: 0, logical: 0, node: '' };

export function encodeHlc(h: Hlc): string {
  return `${String(h.physical).padStart(PHYSICAL_DIGITS, '0')}-${String(h.logical).padStart(LOGICAL_DIGITS, '0')}-${h.node}`;
}

export function decodeHlc(text: string): Hlc {
  const m = HLC_TEXT.exec(text);
  if (!m) throw new Error(`not a clock stamp: "${text}"`);
  return { physical: Number(m[1]), logical: Number(m[2]), node: m[3] };
}

export function isHlcText(text: unknown): text is string {
  return typeof text === 'string' && HLC_TEXT.test(text);
}

/** Total order: physical, then logical, then node id. */
export function compareHlc(a: Hlc, b: Hlc): number {
  if (a.physical !== b.physical) return a.physical < b.physical ? -1 : 1;
  if (a.logical !== b.logical) return a.logical < b.logical ? -1 : 1;
  return a.node < b.node ? -1 : a.node > b.node ? 1 : 0;
}

/** The greater of two encoded stamps (null counts as the smallest). */
export function maxHlcText(a: string | null | undefined, b: string | null | undefined): string | null {
  if (a == null) return b ?? null;
  if (b == null) return a;
  return a >= b ? a : b;
}

/** Keeps (physical, logical) strictly increasing even when the counter would overflow its width. */
function normalize(physical: number, logical: number, node: string): Hlc {
  return logical > MAX_LOGICAL ? { physical: physical + 1, logical: 0, node } : { physical, logical, node };
}

/** Send/local event rule: strictly greater than `last`, and never behind the wall clock. */
export function tick(last: Hlc, wallMs: number, node: string): Hlc {
  if (wallMs > last.physical) return { physical: wallMs, logical: 0, node };
  return normalize(last.physical, last.logical + 1, node);
}

/** Receive rule: strictly greater than both `last` and `remote`. */
export function receive(last: Hlc, remote: Hlc, wallMs: number, node: string): Hlc {
  const physical = Math.max(last.physical, remote.physical, wallMs);
  let logical: number;
  if (physical === last.physical && physical === remote.physical) logical = Math.max(last.logical, remote.logical) + 1;
  else if (physical === last.physical) logical = last.logical + 1;
  else if (physical === remote.physical) logical = remote.logical + 1;
  else logical = 0;
  return normalize(physical, logical, node);
}

/** How far a remote stamp is ahead of our wall clock, in ms (0 when it is not ahead). */
export function driftAhead(remote: Hlc, wallMs: number): number {
  return Math.max(0, remote.physical - wallMs);
}
