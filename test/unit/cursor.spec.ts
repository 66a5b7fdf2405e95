import fc from 'fast-check';
import { compareHlc, decodeHlc, encodeHlc } from '@lib/sync/clock/hlc';
import {
  compareCursor,
  decodeCursor,
  encodeCursor,
  isCursorText,
  OwnedCursor,
  TOMBSTONE_KIND,
} from '@lib/sync/owned/cursor';
import { OWNED_MODELS } from '@lib/sync/models/registry';

/**
 * The owned cursor (version, kind, id) is compared as text everywhere (watermarks in the devices
 * table, the publisher, the catch-up protocol): its text order must be its tuple order.
 */

const hex = (n: number) => fc.stringOf(fc.constantFrom(...'0123456789abcdef'), { minLength: n, maxLength: n });
/** Lowercase UUID text, with small alphabets mixed in so that shared prefixes are common. */
const arbId = fc.oneof(
  fc.uuid(),
  fc.tuple(hex(8), hex(4), hex(4), hex(4), hex(12)).map((p) => p.join('-')),
  fc.constantFrom(
    '00000000-0000-4000-8000-000000000001',
    '00000000-0000-4000-8000-000000000002',
    'ffffffff-ffff-4fff-bfff-ffffffffffff',
  ),
);
const arbVersion = fc
  .record({
    physical: fc.oneof(fc.integer({ min: 0, max: 3 }), fc.integer({ min: 0, max: 999_999_999_999_999 })),
    logical: fc.oneof(fc.integer({ min: 0, max: 3 }), fc.integer({ min: 0, max: 999_999 })),
    node: arbId,
  })
  .map(encodeHlc);
const KINDS = [...OWNED_MODELS.map((m) => m.order), TOMBSTONE_KIND];
const arbCursor: fc.Arbitrary<OwnedCursor> = fc.record({
  version: arbVersion,
  kind: fc.constantFrom(...KINDS),
  id: arbId,
});

/** Tuple order, computed without looking at the text form. */
function tupleCompare(a: OwnedCursor, b: OwnedCursor): number {
  const v = compareHlc(decodeHlc(a.version), decodeHlc(b.version));
  if (v !== 0) return Math.sign(v);
  if (a.kind !== b.kind) return a.kind < b.kind ? -1 : 1;
  // ids compare as UUIDs (their 16 bytes, as Postgres orders uuid): hex digit by hex digit
  const x = a.id.replace(/-/g, '');
  const y = b.id.replace(/-/g, '');
  return x < y ? -1 : x > y ? 1 : 0;
}
const textCompare = (a: string, b: string) => (a < b ? -1 : a > b ? 1 : 0);

describe('owned cursor', () => {
  it('round-trips through its text form', () => {
    fc.assert(
      fc.property(arbCursor, (c) => {
        const text = encodeCursor(c);
        expect(isCursorText(text)).toBe(true);
        expect(decodeCursor(text)).toEqual(c);
        expect(encodeCursor(decodeCursor(text))).toBe(text);
      }),
      { numRuns: 1000 },
    );
  });

  it('text order equals (version, kind, id) tuple order', () => {
    // pairs that share the version, or the version and kind, are generated on purpose
    const arbPair = fc.oneof(
      fc.tuple(arbCursor, arbCursor),
      fc
        .tuple(arbCursor, fc.constantFrom(...KINDS), arbId)
        .map(([a, kind, id]): [OwnedCursor, OwnedCursor] => [a, { version: a.version, kind, id }]),
      fc.tuple(arbCursor, arbId).map(([a, id]): [OwnedCursor, OwnedCursor] => [a, { ...a, id }]),
      fc.tuple(arbCursor, fc.integer({ min: 0, max: 999_999 })).map(([a, logical]): [OwnedCursor, OwnedCursor] => {
        const h = decodeHlc(a.version);
        return [a, { ...a, version: encodeHlc({ ...h, logical }) }];
      }),
    );
    fc.assert(
      fc.property(arbPair, ([a, b]) => {
        const expected = tupleCompare(a, b);
        expect(textCompare(encodeCursor(a), encodeCursor(b))).toBe(expected);
        expect(Math.sign(compareCursor(a, b))).toBe(expected);
        expect(Math.sign(compareCursor(b, a))).toBe(expected === 0 ? 0 : -expected);
      }),
      { numRuns: 2000 },
    );
  });

  it('sorting cursors as text sorts them as tuples', () => {
    fc.assert(
      fc.property(fc.array(arbCursor, { maxLength: 40 }), (cs) => {
        const byText = [...cs].map(encodeCursor).sort();
        const byTuple = [...cs].sort(tupleCompare).map(encodeCursor);
        expect(byText).toEqual(byTuple);
      }),
    );
  });

  it('places rows of a version in dependency order and its tombstones after them', () => {
    const version = encodeHlc({
      physical: 1_700_000_000_000,
      logical: 0,
      node: '00000000-0000-4000-8000-00000000000a',
    });
    const id = 'ffffffff-ffff-4fff-bfff-ffffffffffff';
    const low = '00000000-0000-4000-8000-000000000000';
    const order = [
      ...OWNED_MODELS.map((m) => encodeCursor({ version, kind: m.order, id })),
      encodeCursor({ version, kind: TOMBSTONE_KIND, id: low }),
    ];
    expect([...order].sort()).toEqual(order);
    const next = encodeHlc({ physical: 1_700_000_000_000, logical: 1, node: '00000000-0000-4000-8000-000000000000' });
    expect(encodeCursor({ version: next, kind: 0, id: low }) > order[order.length - 1]).toBe(true);
  });

  it('rejects text that is not a cursor', () => {
    const v = encodeHlc({ physical: 5, logical: 1, node: '00000000-0000-4000-8000-00000000000a' });
    const id = '00000000-0000-4000-8000-000000000001';
    for (const bad of [
      '',
      'x',
      `${v}|1`,
      `${v}|12|${id}`,
      `${v}|x|${id}`,
      `${v}|1|${id}|`,
      `${v}|1|not-a-uuid`,
      `0-0-a|1|${id}`,
      ` ${v}|1|${id}`,
    ]) {
      expect(isCursorText(bad)).toBe(false);
      expect(() => decodeCursor(bad)).toThrow(/not an owned cursor/);
    }
    expect(isCursorText(42)).toBe(false);
    expect(isCursorText(null)).toBe(false);
  });
});
