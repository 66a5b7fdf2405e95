import { randomUUID } from 'node:crypto';
import { Heartbeat } from '@lib/sync';

describe('Heartbeat schema', () => {
  const hb = {
    v: 1,
    kind: 'heartbeat',
    library: randomUUID(),
    origin: randomUUID(),
    name: 'a',
    phase: 'ready',
    hlc: `000001970000000-000000-${randomUUID()}`,
    state: {},
    shared: {},
    ownedHead: null,
    sharedHead: null,
  };

  it('accepts a heartbeat of a newer device, dropping the fields it does not know', () => {
    const r = Heartbeat.safeParse({ ...hb, somethingNew: { a: 1 } });
    expect(r.success).toBe(true);
    expect(r.success && 'somethingNew' in r.data).toBe(false);
  });

  it('still refuses a heartbeat whose known fields are wrong', () => {
    expect(Heartbeat.safeParse({ ...hb, phase: 42 }).success).toBe(false);
    expect(Heartbeat.safeParse({ ...hb, origin: 'not-a-uuid' }).success).toBe(false);
  });
});
