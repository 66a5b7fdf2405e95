import type { ModelDigest, PeerStatus, SyncPhase, SyncStatus } from '@lib/sync';
import { HttpResult, LONG, waitFor } from './device-harness';

/**
 * A device's state through its public API (docs/http.md "Health and sync state"): /sync/status and
 * /sync/digest, and the waits built on them.
 */

/** What a test needs of a device: in-process (TestDevice) or a real process (DeviceProcess). */
export interface Api {
  readonly url: string;
  req<T = any>(method: string, path: string, body?: unknown): Promise<HttpResult<T>>;
}

/** /sync/digest: live records and a content hash per model; equal digests, the same data. */
export type Digest = Record<string, ModelDigest>;

/** One (owner, model) of /sync/status's backfill progress. */
export type BackfillItem = NonNullable<SyncStatus['backfill']>['items'][number];

/** The request must succeed (2xx); returns the body, or throws with the status and body. */
export async function must<T = any>(p: Api, method: string, path: string, body?: unknown): Promise<T> {
  const r = await p.req<T>(method, path, body);
  if (r.status < 200 || r.status >= 300)
    throw new Error(`${method} ${p.url}${path} -> ${r.status} ${JSON.stringify(r.body).slice(0, 500)}`);
  return r.body;
}

/** /sync/status (its JSON has the shape of SyncStatus: strings, numbers, booleans and nulls only). */
export const statusOf = (p: Api): Promise<SyncStatus> => must<SyncStatus>(p, 'GET', '/sync/status');

export const digestOf = async (p: Api): Promise<Digest> =>
  (await must<{ models: Digest }>(p, 'GET', '/sync/digest')).models;

/** Sum of a metric's samples in the device's /metrics (every label set). */
export async function metricSum(p: Api, name: string): Promise<number> {
  const res = await p.req<{ raw: string }>('GET', '/metrics');
  let n = 0;
  for (const line of res.body.raw.split('\n'))
    if (line.startsWith(`${name}{`) || line.startsWith(`${name} `)) n += Number(line.split(' ').pop());
  return n;
}

/** A peer as a status shows it (undefined: not listed). */
export function peerIn(s: SyncStatus, id: string): PeerStatus | undefined {
  return s.peers.find((p) => p.deviceId === id);
}

/** Waits until the device reports this phase (ready: its sync has linked and caught up). */
export async function waitPhase(p: Api, phase: SyncPhase = 'ready', timeoutMs = LONG): Promise<SyncStatus> {
  return waitFor(
    `${p.url} to reach phase ${phase}`,
    async () => {
      const s = await statusOf(p);
      if (s.phase !== phase) throw new Error(`phase ${s.phase}`);
      return s;
    },
    timeoutMs,
    100,
  );
}

/**
 * Waits until every device reports the same digest and, when given, these live counts per model;
 * returns the common digest. Polls gently: a digest reads every row, and in-process devices share
 * the test's event loop.
 */
export async function waitConverged(
  peers: Api[],
  counts: Record<string, number> = {},
  timeoutMs = LONG,
  everyMs = 250,
): Promise<Digest> {
  return waitFor(
    `${peers.length} devices to converge${Object.keys(counts).length ? ` on ${JSON.stringify(counts)}` : ''}`,
    async () => {
      const digests = await Promise.all(peers.map(digestOf));
      const brief = () =>
        JSON.stringify(
          digests.map((d) =>
            Object.fromEntries(Object.entries(d).map(([m, v]) => [m, `${v.count}:${v.hash.slice(0, 8)}`])),
          ),
        );
      const text = digests.map((d) => JSON.stringify(d));
      if (!text.every((t) => t === text[0])) throw new Error(`digests differ: ${brief()}`);
      for (const [model, n] of Object.entries(counts)) {
        if (digests[0][model]?.count !== n)
          throw new Error(`${model}: ${digests[0][model]?.count} records, expecting ${n}: ${brief()}`);
      }
      return digests[0];
    },
    timeoutMs,
    everyMs,
  );
}
