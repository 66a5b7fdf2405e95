import fc from 'fast-check';
import {
  createEntryInput,
  entryBatchInput,
  isPlainValidEntry,
  MAX_BATCH,
  parseEntryBatch,
} from '../../src/library/entries/entry.input';

/**
 * POST /entries/batch checks 10,000 items with plain code and leaves only the rejects to zod. The
 * fast check must never accept what zod refuses, and what it accepts must be exactly zod's output.
 */

const LOC = '0b0e8f9e-5d1a-4c3b-9a7e-2f4d6c8b0a1e';

const valid = {
  id: '6f1c2d3e-4b5a-4978-8a6b-5c4d3e2f1a0b',
  locationId: LOC,
  name: 'IMG_1.jpg',
  path: '/photos/IMG_1.jpg',
  kind: 'file',
  sizeBytes: 1234,
  modifiedAt: '2026-05-01T12:00:00.000Z',
};

/** Values close to every boundary the schema draws, and some far from it. */
const arbValue = fc.oneof(
  fc.constantFrom(
    undefined,
    null,
    '',
    ' ',
    '\u0000',
    'a\ud800',
    '\ud83d\ude00',
    'file',
    'dir',
    'FILE',
    LOC,
    LOC.toUpperCase(),
    `${LOC}x`,
    LOC.replace(/-/g, ''),
    '2026-05-01T12:00:00Z',
    '2026-05-01T12:00:00.123456+02:00',
    '2026-02-29T00:00:00Z',
    '2024-02-29T00:00:00Z',
    '2026-13-01T00:00:00Z',
    '2026-05-01 12:00:00Z',
    '2026-05-01T12:00:00',
    0,
    -1,
    1.5,
    Number.MAX_SAFE_INTEGER,
    Number.MAX_SAFE_INTEGER + 1,
    'x'.repeat(1000),
    'x'.repeat(1001),
    `/${'p'.repeat(4095)}`,
    `/${'p'.repeat(4096)}`,
    [],
    {},
  ),
  fc.string({ maxLength: 8 }),
  fc.integer(),
  fc.double(),
  fc.boolean(),
);

const KEYS = ['id', 'locationId', 'name', 'path', 'kind', 'sizeBytes', 'modifiedAt', 'extra', '__proto__'] as const;

/** A valid item with some fields replaced, removed or added. */
const arbItem = fc
  .array(fc.tuple(fc.constantFrom(...KEYS), fc.oneof(arbValue, fc.constant('DELETE'))), { maxLength: 3 })
  .map((edits) => {
    const item: Record<string, unknown> = JSON.parse(JSON.stringify(valid));
    for (const [k, v] of edits) {
      if (v === 'DELETE') delete item[k];
      else Object.defineProperty(item, k, { value: v, enumerable: true, writable: true, configurable: true });
    }
    return item;
  });

describe('entry batch input', () => {
  it('the fast check accepts only what zod accepts, unchanged', () => {
    fc.assert(
      fc.property(arbItem, (item) => {
        const zod = createEntryInput.safeParse(item);
        if (isPlainValidEntry(item)) {
          expect(zod.success).toBe(true);
          expect(zod.success && zod.data).toEqual(item);
        }
      }),
      { numRuns: 5000 },
    );
  });

  it('accepts plain valid items (the fast path is taken)', () => {
    expect(isPlainValidEntry(valid)).toBe(true);
    const { id: _, ...withoutId } = valid;
    expect(isPlainValidEntry(withoutId)).toBe(true);
    expect(isPlainValidEntry({ ...valid, modifiedAt: '2026-05-01T12:00:00+02:00' })).toBe(true);
  });

  it('a batch with one bad item gets zod’s 400 naming the field; a valid one comes back as given', () => {
    const items = Array.from({ length: 20 }, () => ({ ...valid, id: undefined as string | undefined })).map(
      ({ id: _, ...rest }) => rest,
    );
    expect(parseEntryBatch({ items })).toEqual({ items });
    const bad = items.map((it, i) => (i === 13 ? { ...it, sizeBytes: -1 } : it));
    expect(() => parseEntryBatch({ items: bad })).toThrow(/items\[13\]\.sizeBytes/);
    expect(() => parseEntryBatch({ items, more: 1 })).toThrow(/more/);
    expect(() => parseEntryBatch({ items: new Array(MAX_BATCH + 1).fill(items[0]) })).toThrow(/at most 10000/);
    expect(() => parseEntryBatch([])).toThrow();
    expect(entryBatchInput.safeParse({ items }).success).toBe(true);
  });
});
