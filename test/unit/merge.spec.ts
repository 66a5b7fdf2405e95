import fc from 'fast-check';
import { encodeHlc } from '@lib/sync/clock/hlc';
import { SharedModel, TAGS, USER_METADATA } from '@lib/sync/models/registry';
import { applyChange, changes, initialState, mergeStates, SharedChange, SharedState } from '@lib/sync/shared/merge';

/**
 * Property-based proof of the field-wise LWW merge of shared records (docs/design.md, "Shared data"):
 * order independence, idempotence, a join-semilattice for mergeStates, delete wins, and per-field
 * last-writer-wins against an independent oracle.
 */

const NODES = [
  '00000000-0000-4000-8000-00000000000a',
  '00000000-0000-4000-8000-00000000000b',
  '00000000-0000-4000-8000-00000000000c',
];

/**
 * Distinct HLC stamps. Small ranges so that equal physical times, equal counters and node
 * tie-breaks all occur often; uniqueness is on the (physical, logical, node) triple.
 */
const arbStamps = (minLength: number, maxLength: number) =>
  fc
    .uniqueArray(
      fc.record({
        physical: fc.oneof(
          fc.integer({ min: 0, max: 6 }),
          fc.integer({ min: 1_700_000_000_000, max: 1_700_000_000_006 }),
        ),
        logical: fc.integer({ min: 0, max: 3 }),
        node: fc.constantFrom(...NODES),
      }),
      { minLength, maxLength, selector: (h) => `${h.physical}/${h.logical}/${h.node}` },
    )
    .map((hs) => hs.map(encodeHlc));

/** A value each synced field of the model may take (what its wire schema accepts). */
function arbFieldValue(model: SharedModel, field: string): fc.Arbitrary<unknown> {
  const initial = model.fields[field].initial;
  const arb: fc.Arbitrary<unknown> =
    typeof initial === 'boolean' ? fc.boolean() : fc.oneof(fc.string({ maxLength: 6 }), fc.constant(null));
  return arb.filter((v) => model.fields[field].schema.safeParse(v).success);
}

const arbFields = (model: SharedModel): fc.Arbitrary<Record<string, unknown>> =>
  fc.record(Object.fromEntries(Object.keys(model.fields).map((f) => [f, arbFieldValue(model, f)])), {
    requiredKeys: [],
  });

/** A change for each stamp: mostly sets of a random subset of fields, sometimes a delete. */
const arbChanges = (model: SharedModel, minLength = 0, maxLength = 14): fc.Arbitrary<SharedChange[]> =>
  arbStamps(minLength, maxLength).chain((stamps) =>
    fc.tuple(
      ...stamps.map((hlc) =>
        fc.oneof(
          { weight: 5, arbitrary: arbFields(model).map((fields): SharedChange => ({ hlc, op: 'set', fields })) },
          { weight: 1, arbitrary: fc.constant<SharedChange>({ hlc, op: 'delete', fields: {} }) },
        ),
      ),
    ),
  );

/** Changes together with a random permutation of them. */
const arbChangesAndPermutation = (model: SharedModel) =>
  arbChanges(model).chain((cs) =>
    fc.tuple(fc.constant(cs), fc.shuffledSubarray(cs, { minLength: cs.length, maxLength: cs.length })),
  );

const fold = (model: SharedModel, cs: readonly SharedChange[], from: SharedState = initialState(model)): SharedState =>
  cs.reduce(applyChange, from);

/** What the state must be, computed independently of merge.ts: per field, the greatest stamp wins. */
function oracle(model: SharedModel, cs: readonly SharedChange[]): SharedState {
  const state = initialState(model);
  const max = (a: string | null, b: string) => (a === null || b > a ? b : a);
  let updated: string | null = null;
  let deleted: string | null = null;
  for (const field of Object.keys(model.fields)) {
    let best: SharedChange | null = null;
    for (const c of cs) if (c.op === 'set' && field in c.fields && (best === null || c.hlc > best.hlc)) best = c;
    if (best) {
      state.values[field] = best.fields[field];
      state.clocks[field] = best.hlc;
    }
  }
  for (const c of cs) {
    updated = max(updated, c.hlc);
    if (c.op === 'delete') deleted = max(deleted, c.hlc);
  }
  return { ...state, deletedHlc: deleted, updatedHlc: updated ?? '' };
}

const RUNS = { numRuns: 300 };

describe.each([
  ['tags', TAGS],
  ['user_metadata', USER_METADATA],
])('shared merge (%s)', (_name, model) => {
  it('applying the changes in any order gives the same state, the one the oracle predicts', () => {
    fc.assert(
      fc.property(arbChangesAndPermutation(model), ([cs, permuted]) => {
        const a = fold(model, cs);
        expect(fold(model, permuted)).toEqual(a);
        expect(fold(model, [...cs].reverse())).toEqual(a);
        expect(a).toEqual(oracle(model, cs));
      }),
      RUNS,
    );
  });

  it('applying a change twice equals applying it once (redelivery is harmless)', () => {
    fc.assert(
      fc.property(arbChanges(model, 1), fc.array(fc.nat()), (cs, dupIdx) => {
        for (const c of cs) {
          const once = applyChange(fold(model, cs), c);
          expect(applyChange(once, c)).toEqual(once);
        }
        // any sequence with duplicates (any number of times, anywhere) folds to the same state
        const withDups = [...cs];
        for (const i of dupIdx) withDups.splice(i % (withDups.length + 1), 0, cs[i % cs.length]);
        expect(fold(model, withDups)).toEqual(fold(model, cs));
      }),
      RUNS,
    );
  });

  it('applyChange never loses information: the result merged with the old state is the result', () => {
    fc.assert(
      fc.property(arbChanges(model, 1), (cs) => {
        const before = fold(model, cs.slice(0, -1));
        const after = applyChange(before, cs[cs.length - 1]);
        expect(mergeStates(after, before)).toEqual(after);
        expect(mergeStates(before, after)).toEqual(after);
      }),
      RUNS,
    );
  });

  it('changes() is true exactly when applying the change alters the state', () => {
    fc.assert(
      fc.property(arbChanges(model, 1), fc.nat(), (cs, k) => {
        const state = fold(model, cs.slice(0, k % cs.length));
        for (const c of cs)
          expect(changes(state, c)).toBe(JSON.stringify(applyChange(state, c)) !== JSON.stringify(state));
        const full = fold(model, cs);
        for (const c of cs) expect(changes(full, c)).toBe(false);
      }),
      RUNS,
    );
  });

  describe('mergeStates (state transfer)', () => {
    /** Three change sets drawn from one pool of distinct stamps (so they may overlap). */
    const arbThreeSets = arbChanges(model, 0, 16).chain((pool) =>
      fc.tuple(fc.constant(pool), fc.subarray(pool), fc.subarray(pool), fc.subarray(pool)),
    );

    it('is commutative', () => {
      fc.assert(
        fc.property(arbThreeSets, ([, x, y]) => {
          const a = fold(model, x);
          const b = fold(model, y);
          expect(mergeStates(a, b)).toEqual(mergeStates(b, a));
        }),
        RUNS,
      );
    });

    it('is associative', () => {
      fc.assert(
        fc.property(arbThreeSets, ([, x, y, z]) => {
          const [a, b, c] = [fold(model, x), fold(model, y), fold(model, z)];
          expect(mergeStates(mergeStates(a, b), c)).toEqual(mergeStates(a, mergeStates(b, c)));
        }),
        RUNS,
      );
    });

    it('is idempotent', () => {
      fc.assert(
        fc.property(arbChanges(model), (cs) => {
          const a = fold(model, cs);
          expect(mergeStates(a, a)).toEqual(a);
          expect(mergeStates(a, initialState(model))).toEqual(a);
          expect(mergeStates(initialState(model), a)).toEqual(a);
        }),
        RUNS,
      );
    });

    it('merging the state of X with the state of Y equals the state of X ∪ Y', () => {
      fc.assert(
        fc.property(arbThreeSets, ([pool, x, y]) => {
          const union = pool.filter((c) => x.includes(c) || y.includes(c));
          const expected = fold(model, union);
          expect(mergeStates(fold(model, x), fold(model, y))).toEqual(expected);
          // and applying Y's changes on top of X's state (a log replay after a transfer) agrees
          expect(fold(model, y, fold(model, x))).toEqual(expected);
        }),
        RUNS,
      );
    });
  });

  it('a delete wins over every concurrent or later edit: the record stays deleted', () => {
    fc.assert(
      fc.property(arbChanges(model, 1), fc.nat(), (cs, k) => {
        // turn one change into a delete; all the others (before, concurrent, after it) are edits or deletes
        const i = k % cs.length;
        const withDelete = cs.map((c, j) => (j === i ? { hlc: c.hlc, op: 'delete' as const, fields: {} } : c));
        const deletes = withDelete.filter((c) => c.op === 'delete').map((c) => c.hlc);
        const greatestDelete = deletes.reduce((m, h) => (h > m ? h : m));
        const state = fold(model, withDelete);
        expect(state.deletedHlc).toBe(greatestDelete);
        // every later edit (greater stamp than the delete) still leaves the record deleted
        const later = withDelete.filter((c) => c.op === 'set' && c.hlc > withDelete[i].hlc);
        expect(fold(model, later, fold(model, [withDelete[i]])).deletedHlc).toBe(withDelete[i].hlc);
        // and so does a state transfer from a replica that never saw the delete
        const liveReplica = fold(
          model,
          withDelete.filter((c) => c.op === 'set'),
        );
        expect(liveReplica.deletedHlc).toBeNull();
        expect(mergeStates(liveReplica, state).deletedHlc).toBe(greatestDelete);
        expect(mergeStates(state, liveReplica).deletedHlc).toBe(greatestDelete);
      }),
      RUNS,
    );
  });

  it('concurrent edits of different fields on two devices both survive, whatever the order', () => {
    const fields = Object.keys(model.fields);
    fc.assert(
      fc.property(
        fc
          .constantFrom(...fields)
          .chain((f1) => fc.tuple(fc.constant(f1), fc.constantFrom(...fields.filter((f) => f !== f1)))),
        fc.integer({ min: 0, max: 1_000 }),
        fc.integer({ min: 0, max: 1_000 }),
        fc.integer({ min: 0, max: 5 }),
        fc.integer({ min: 0, max: 5 }),
        (fs, pa, pb, la, lb) => {
          const [f1, f2] = fs;
          const v1 = model.fields[f1].initial === false ? true : 'from A';
          const v2 = model.fields[f2].initial === false ? true : 'from B';
          const a: SharedChange = {
            hlc: encodeHlc({ physical: pa, logical: la, node: NODES[0] }),
            op: 'set',
            fields: { [f1]: v1 },
          };
          const b: SharedChange = {
            hlc: encodeHlc({ physical: pb, logical: lb, node: NODES[1] }),
            op: 'set',
            fields: { [f2]: v2 },
          };
          for (const s of [fold(model, [a, b]), fold(model, [b, a]), mergeStates(fold(model, [a]), fold(model, [b]))]) {
            expect(s.values[f1]).toEqual(v1);
            expect(s.values[f2]).toEqual(v2);
            expect(s.clocks).toEqual({ [f1]: a.hlc, [f2]: b.hlc });
            expect(s.deletedHlc).toBeNull();
          }
        },
      ),
      RUNS,
    );
  });

  it('concurrent edits of the same field keep the greatest HLC on every replica, whatever the arrival order', () => {
    const fields = Object.keys(model.fields);
    fc.assert(
      fc.property(arbStamps(2, 6), fc.constantFrom(...fields), (stamps, field) => {
        const cs: SharedChange[] = stamps.map((hlc, i) => ({
          hlc,
          op: 'set',
          fields: { [field]: model.fields[field].initial === false ? i % 2 === 0 : `v${i}` },
        }));
        const winner = cs.reduce((m, c) => (c.hlc > m.hlc ? c : m));
        const replicas = [
          fold(model, cs),
          fold(model, [...cs].reverse()),
          cs.map((c) => fold(model, [c])).reduce(mergeStates),
        ];
        for (const s of replicas) {
          expect(s.values[field]).toEqual(winner.fields[field]);
          expect(s.clocks[field]).toBe(winner.hlc);
          expect(s.updatedHlc).toBe(winner.hlc);
        }
      }),
      RUNS,
    );
  });

  it('starts from the registry initial values and leaves untouched fields alone', () => {
    const init = initialState(model);
    expect(init.values).toEqual(Object.fromEntries(Object.entries(model.fields).map(([k, f]) => [k, f.initial])));
    expect(init).toEqual({ values: init.values, clocks: {}, deletedHlc: null, updatedHlc: '' });
    const [field] = Object.keys(model.fields);
    const s = applyChange(init, {
      hlc: encodeHlc({ physical: 1, logical: 0, node: NODES[0] }),
      op: 'set',
      fields: { [field]: model.fields[field].initial === false ? true : 'x' },
    });
    for (const other of Object.keys(model.fields).filter((f) => f !== field))
      expect(s.values[other]).toEqual(model.fields[other].initial);
    // the input state is never mutated
    expect(init.values[field]).toEqual(model.fields[field].initial);
  });
});
