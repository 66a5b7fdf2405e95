import { backfillPlan } from '@lib/sync/backfill/backfill';
import type { WatermarksReply } from '@lib/sync/rpc/protocol';

const A = '00000000-0000-4000-8000-00000000000a';
const B = '00000000-0000-4000-8000-00000000000b';
const C = '00000000-0000-4000-8000-00000000000c';
const hlc = (ms: number, origin: string) => `${String(ms).padStart(15, '0')}-000000-${origin}`;
const cursor = (ms: number, origin: string) => `${hlc(ms, origin)}|2|${origin}`;

function reply(deviceId: string, over: Partial<WatermarksReply>): WatermarksReply {
  return {
    deviceId,
    name: deviceId.slice(-1),
    phase: 'ready',
    ownedHead: null,
    sharedHead: null,
    sharedPrunedUpTo: null,
    state: {},
    shared: {},
    rows: 0,
    counts: {},
    ...over,
  };
}

/**
 * Found by `npm run chaos` (seed 1000): a device killed during its first backfill resumed from
 * another source and took that source's shared head of *now* as its watermark, although its
 * shared pages were taken from the first source, which lagged behind: the changes between were
 * never pulled (anti-entropy repaired them). The plan must keep what the first attempt vouched for.
 */
describe('backfill plan', () => {
  it("holds the source's own heads as its entries", () => {
    const plan = backfillPlan(
      reply(B, {
        ownedHead: cursor(50, B),
        sharedHead: hlc(60, B),
        state: { [A]: cursor(40, A) },
        shared: { [A]: hlc(45, A) },
      }),
      null,
    );
    expect(plan).toEqual({
      source: B,
      state: { [A]: cursor(40, A), [B]: cursor(50, B) },
      shared: { [A]: hlc(45, A), [B]: hlc(60, B) },
    });
  });

  it('resumed from another source, keeps the lower of both views of every origin, heads included', () => {
    // first attempt from B: B had applied A's shared log up to 45 (A was at 90 already)
    const first = backfillPlan(
      reply(B, {
        ownedHead: cursor(50, B),
        sharedHead: hlc(60, B),
        state: { [A]: cursor(40, A), [C]: cursor(30, C) },
        shared: { [A]: hlc(45, A), [C]: hlc(35, C) },
      }),
      null,
    );
    // resumed from A, later: A's own heads are far ahead, and A knows B further than B did then
    const resumed = backfillPlan(
      reply(A, {
        ownedHead: cursor(100, A),
        sharedHead: hlc(110, A),
        state: { [B]: cursor(70, B), [C]: cursor(20, C) },
        shared: { [B]: hlc(80, B), [C]: hlc(36, C) },
      }),
      first,
    );
    expect(resumed.source).toBe(A);
    // A's changes after 45 were pulled from nowhere: its watermarks stay where B vouched
    expect(resumed.shared[A]).toBe(hlc(45, A));
    expect(resumed.state[A]).toBe(cursor(40, A));
    // B: where B itself stood then; C: whichever source knew less
    expect(resumed.shared[B]).toBe(hlc(60, B));
    expect(resumed.state[B]).toBe(cursor(50, B));
    expect(resumed.state[C]).toBe(cursor(20, C));
    expect(resumed.shared[C]).toBe(hlc(35, C));
  });

  it('leaves an origin unset when one of the sources does not vouch for it', () => {
    const first = backfillPlan(reply(B, { sharedHead: hlc(60, B), shared: {} }), null);
    const resumed = backfillPlan(reply(A, { sharedHead: hlc(110, A), shared: { [B]: hlc(80, B) } }), first);
    expect(resumed.shared).toEqual({ [B]: hlc(60, B) });
    expect(resumed.shared[A]).toBeUndefined();
  });
});
