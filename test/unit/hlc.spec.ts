import fc from 'fast-check';
import { compareHlc, decodeHlc, encodeHlc, Hlc, receive, tick } from '@lib/sync';

const NODE_A = '00000000-0000-4000-8000-00000000000a';
const NODE_B = '00000000-0000-4000-8000-00000000000b';
const arbHlc = fc.record({
  physical: fc.integer({ min: 0, max: 4_102_444_800_000 }),
  logical: fc.integer({ min: 0, max: 999_999 }),
  node: fc.constantFrom(NODE_A, NODE_B),
});

describe('hybrid logical clock', () => {
  it('encodes so that text order is clock order', () => {
    fc.assert(
      fc.property(arbHlc, arbHlc, (a, b) => {
        const byText = encodeHlc(a) < encodeHlc(b) ? -1 : encodeHlc(a) > encodeHlc(b) ? 1 : 0;
        expect(byText).toBe(Math.sign(compareHlc(a, b)));
        expect(decodeHlc(encodeHlc(a))).toEqual(a);
      }),
    );
  });

  it('tick is strictly increasing whatever the wall clock does (including stepping back)', () => {
    fc.assert(
      fc.property(
        fc.array(fc.integer({ min: 0, max: 4_102_444_800_000 }), { minLength: 1, maxLength: 200 }),
        (walls) => {
          let last: Hlc = { physical: 0, logical: 0, node: NODE_A };
          for (const w of walls) {
            const next = tick(last, w, NODE_A);
            expect(compareHlc(next, last)).toBeGreaterThan(0);
            expect(next.physical).toBeGreaterThanOrEqual(w);
            last = next;
          }
        },
      ),
    );
  });

  it('receive is greater than both the local and the remote stamp', () => {
    fc.assert(
      fc.property(arbHlc, arbHlc, fc.integer({ min: 0, max: 4_102_444_800_000 }), (local, remote, wall) => {
        const next = receive({ ...local, node: NODE_A }, remote, wall, NODE_A);
        expect(compareHlc(next, { ...local, node: NODE_A })).toBeGreaterThan(0);
        expect(compareHlc({ ...next, node: '' }, { ...remote, node: '' })).toBeGreaterThan(0);
      }),
    );
  });
});
