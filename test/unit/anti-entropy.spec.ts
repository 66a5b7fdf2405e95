import { randomUUID } from 'node:crypto';
import { batches, differingBuckets, repairMerge, SharedState } from '@lib/sync';

/** The pure parts of anti-entropy (libs/sync/src/antientropy/anti-entropy.ts). */
const stamp = (ms: number, node: string) => `${String(ms).padStart(15, '0')}-000000-${node}`;
const state = (name: string, clock: string): SharedState => ({
  values: { name, color: null },
  clocks: { name: clock },
  deletedHlc: null,
  updatedHlc: clock,
});

describe('anti-entropy, pure parts', () => {
  it('finds the buckets whose hash or count differ, missing ones included', () => {
    const ours = [
      { bucket: 1, hash: '5', count: 1 },
      { bucket: 2, hash: '7', count: 2 },
      { bucket: 9, hash: '1', count: 1 },
    ];
    const theirs = [
      { bucket: 1, hash: '5', count: 1 },
      { bucket: 2, hash: '7', count: 3 },
      { bucket: 4, hash: '3', count: 1 },
    ];
    expect(differingBuckets(ours, theirs)).toEqual([2, 4, 9]);
    expect(differingBuckets(ours, ours)).toEqual([]);
  });

  it('cuts buckets into batches of at most 64 buckets and about 2000 rows', () => {
    const buckets = Array.from({ length: 200 }, (_, i) => i);
    const few = batches(buckets, new Map(buckets.map((b) => [b, 1])));
    expect(few.map((b) => b.length)).toEqual([64, 64, 64, 8]);
    const many = batches(buckets, new Map(buckets.map((b) => [b, 500])));
    expect(many.every((b) => b.length === 4)).toBe(true);
    expect(batches([1], new Map([[1, 10_000]]))).toEqual([[1]]); // a big bucket alone
  });

  it('repairs a field held under the same clock with another value: the issuer of the clock wins, on both sides', () => {
    const [a, b, c] = [randomUUID(), randomUUID(), randomUUID()];
    const clock = stamp(10, a);
    const good = state('holiday', clock);
    const damaged = state('damaged', clock);
    // B (damaged) repairing from A (the issuer), and A comparing with B: both keep A's value
    expect(repairMerge(damaged, good, a, b).values.name).toBe('holiday');
    expect(repairMerge(good, damaged, b, a).values.name).toBe('holiday');
    // neither is the issuer: the same deterministic choice on both sides
    const x = repairMerge(damaged, good, c, b).values.name;
    const y = repairMerge(good, damaged, b, c).values.name;
    expect(x).toBe(y);
    // otherwise the ordinary merge: the newer clock wins
    const newer = state('renamed', stamp(11, b));
    expect(repairMerge(good, newer, b, a).values.name).toBe('renamed');
    expect(repairMerge(newer, good, a, b).values.name).toBe('renamed');
  });
});
