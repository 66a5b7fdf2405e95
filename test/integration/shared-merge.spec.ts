import { randomUUID } from 'node:crypto';
import fc from 'fast-check';
import type { Db } from '@lib/db';
import {
  applyChange,
  ClockService,
  DevicesRepository,
  encodeHlc,
  initialState,
  SharedApplier,
  SharedMessage,
  SharedModel,
  SharedRepository,
  SharedState,
  SyncMetrics,
  TAGS,
  USER_METADATA,
} from '@lib/sync';
import { DB_MODES, DRIFT, useTestDb } from './storage-db';

/**
 * A peer's shared changes are merged in SQL (sync_apply_shared and SharedRepository's
 * mergeStatement); merge.ts is the rule they must keep. Whatever the batching, interleaving and
 * redelivery of the origins' messages, every record ends as merge.ts's fold of all its changes.
 */

type Gen = { model: SharedModel; key: string; op: 'set' | 'delete'; fields: Record<string, unknown> };

const text = fc.string({ maxLength: 12 }).filter((s) => !s.includes('\u0000'));
const tagFields = fc.record(
  { name: fc.oneof(text, fc.constantFrom("it's", 'back\\slash', '"quoted"', 'ünï')), color: fc.option(text) },
  { requiredKeys: [] },
);
const metaFields = fc.record(
  { favorite: fc.boolean(), hidden: fc.boolean(), notes: fc.option(text) },
  { requiredKeys: [] },
);

function changeArb(tagKeys: string[], metaKeys: string[]): fc.Arbitrary<Gen> {
  return fc.oneof(
    fc.record({
      model: fc.constant(TAGS),
      key: fc.constantFrom(...tagKeys),
      op: fc.constant('set' as const),
      fields: tagFields,
    }),
    fc.record({
      model: fc.constant(TAGS),
      key: fc.constantFrom(...tagKeys),
      op: fc.constant('delete' as const),
      fields: fc.constant({}),
    }),
    fc.record({
      model: fc.constant(USER_METADATA),
      key: fc.constantFrom(...metaKeys),
      op: fc.constant('set' as const),
      fields: metaFields,
    }),
  );
}

describe.each(DB_MODES)('shared merge in SQL on %s', (mode) => {
  let db: Db;
  useTestDb(mode, (d) => (db = d));
  const repo = new SharedRepository();

  it('equals merge.ts for any batching, interleaving and redelivery of the origins’ changes', async () => {
    const self = randomUUID();
    const clock = new ClockService(self, DRIFT);
    await clock.load(db);
    const applier = new SharedApplier(db, clock, repo, new DevicesRepository(), new SyncMetrics());
    const library = randomUUID();
    await fc.assert(
      fc.asyncProperty(
        fc.integer({ min: 1, max: 3 }).chain((origins) =>
          fc.tuple(
            fc.constant(origins),
            fc.array(fc.array(fc.integer({ min: 1, max: 4 }), { minLength: 1, maxLength: 6 }), {
              minLength: origins,
              maxLength: origins,
            }),
            fc.array(fc.nat(), { minLength: 30, maxLength: 30 }),
          ),
        ),
        fc.array(fc.nat(), { minLength: 40, maxLength: 40 }),
        async ([origins, batching, picks], order) => {
          const tagKeys = [randomUUID(), randomUUID()];
          const metaKeys = [randomUUID(), randomUUID()];
          const arb = changeArb(tagKeys, metaKeys);
          const now = Date.now() - 60_000;
          const messages: SharedMessage[] = [];
          const all: { gen: Gen; hlc: string }[] = [];
          for (let o = 0; o < origins; o++) {
            const origin = randomUUID();
            let prev: string | null = null;
            let n = 0;
            for (const size of batching[o]) {
              const changes = fc.sample(arb, { numRuns: size, seed: picks[n % picks.length] + o * 1000 + n });
              const wire = changes.map((gen) => {
                // stamps of different origins collide on purpose: ties break on the node id
                const hlc = encodeHlc({ physical: now + n, logical: n % 3, node: origin });
                n++;
                all.push({ gen, hlc });
                return { hlc, model: gen.model.name, record_key: gen.key, op: gen.op, fields: gen.fields };
              });
              messages.push({ v: 1, kind: 'shared', library, origin, prev, changes: wire });
              prev = wire[wire.length - 1].hlc;
            }
          }
          // delivered in a random interleaving, some of them twice
          const deliveries = [...messages, ...messages.filter((_, i) => order[i % order.length] % 3 === 0)];
          deliveries.sort(
            (a, b) => order[messages.indexOf(a) % order.length] - order[messages.indexOf(b) % order.length],
          );
          for (const m of deliveries) await applier.apply(m);

          const expected = new Map<string, SharedState>();
          for (const { gen, hlc } of all) {
            const k = `${gen.model.name}:${gen.key}`;
            expected.set(
              k,
              applyChange(expected.get(k) ?? initialState(gen.model), { hlc, op: gen.op, fields: gen.fields }),
            );
          }
          for (const [k, state] of expected) {
            const [name, key] = k.split(':');
            const model = name === TAGS.name ? TAGS : USER_METADATA;
            const held = await repo.load(db, model, { [model.keyColumns[0]]: key });
            expect(held).toEqual(state);
          }
        },
      ),
      { numRuns: mode === 'postgres' ? 60 : 25 },
    );
  });

  it('counts an edit that lost to a newer field value as a resolved conflict, and a record as applied once', async () => {
    const self = randomUUID();
    const clock = new ClockService(self, DRIFT);
    await clock.load(db);
    const metrics = new SyncMetrics();
    const applier = new SharedApplier(db, clock, repo, new DevicesRepository(), metrics);
    const [a, b] = [randomUUID(), randomUUID()];
    const id = randomUUID();
    const now = Date.now() - 10_000;
    const msg = (origin: string, physical: number, fields: Record<string, unknown>): SharedMessage => ({
      v: 1,
      kind: 'shared',
      library: randomUUID(),
      origin,
      prev: null,
      changes: [
        { hlc: encodeHlc({ physical, logical: 0, node: origin }), model: 'tags', record_key: id, op: 'set', fields },
      ],
    });
    await applier.apply(msg(a, now + 5, { name: 'newer', color: 'red' }));
    await applier.apply(msg(b, now + 1, { name: 'older' }));
    const value = async (name: string) =>
      (await metrics.registry.getSingleMetric(name)!.get()).values.find((v) => v.labels.model === 'tags')?.value ?? 0;
    expect(await value('sync_conflicts_resolved_total')).toBe(1);
    expect(await value('sync_changes_applied_total')).toBe(1);
    expect((await repo.load(db, TAGS, { id }))!.values).toEqual({ name: 'newer', color: 'red' });
  });
});
