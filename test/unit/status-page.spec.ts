import { Script } from 'node:vm';
import type { Request, Response } from 'express';
import type { SyncStatus } from '@lib/sync';
import { basePath } from '../../src/library/status/status-page.controller';
import { renderStatusPage } from '../../src/library/status/status-page';
import { backfillView, clockTime, formatDuration } from '../../src/library/status/status-view';

/** The status page's pure parts (src/library/status/): rendering, formatting, the library's base URL. */
const LIB = '0b6f3c1e-2a4d-4e8f-9a1b-3c5d7e9f1a2b';
const PEER = '5d1c8a3e-7f2b-4c6d-8e9f-0a1b2c3d4e5f';
const status = (over: Partial<SyncStatus> = {}): SyncStatus => ({
  deviceId: 'a1b2c3d4-0000-4000-8000-000000000001',
  deviceName: 'laptop',
  libraryId: LIB,
  phase: 'ready',
  hlc: '001700000000123-000002-a1b2c3d4-0000-4000-8000-000000000001',
  sharedLogSize: 3,
  peers: [
    {
      deviceId: PEER,
      deviceName: '<img src=x onerror=alert(1)>',
      fingerprint: null,
      member: true,
      online: true,
      lastSeenAt: new Date().toISOString(),
      stateWatermark: null,
      sharedWatermark: null,
      pendingToPeer: 4,
      lagMs: 1500,
      agreedAt: null,
    },
  ],
  fingerprint: 'f',
  keyEpoch: 1,
  natsConnected: true,
  clockDriftHeld: 0,
  deadLetters: 2,
  backfill: null,
  ...over,
});

describe('status page', () => {
  it('renders every value escaped, with the library base in its URLs, and a script that parses', () => {
    const html = renderStatusPage(status(), { nonce: 'n"1', base: `/libraries/${LIB}`, feedAfter: '7' });
    expect(html).not.toContain('<img');
    expect(html).toContain('&lt;img src=x onerror=alert(1)&gt;');
    expect(html).toContain('<script nonce="n&quot;1">');
    expect(html).toContain(`data-base="/libraries/${LIB}"`);
    expect(html).toContain('data-feed-after="7"');
    expect(html).toContain(`<a href="/libraries/${LIB}/sync/status">`);
    expect(html).toMatch(/<td>4<\/td><td>1\.5 s<\/td>/); // pending, lag
    expect(html).toContain('<dd id="dead" class="warn">2</dd>');
    expect(html).toContain('<progress id="backfill-bar" max="1" value="1">');
    const script = /<script nonce="[^"]*">([\s\S]*)<\/script>/.exec(html)![1];
    expect(() => new Script(script)).not.toThrow();
    expect(script).toContain("fetch(base + '/sync/status'");
    expect(script).toContain("new EventSource(base + '/sync/events'");
  });

  it('formats durations and clock stamps', () => {
    expect([null, 0, 850, 4210, 180_000, 5_400_000].map(formatDuration)).toEqual([
      '-',
      '0 ms',
      '850 ms',
      '4.2 s',
      '3 min',
      '1.5 h',
    ]);
    expect(clockTime('001700000000123-000002-abc')).toBe('2023-11-14 22:13:20.123 UTC +2');
    expect(clockTime('001700000000123-000000-abc')).toBe('2023-11-14 22:13:20.123 UTC');
    expect(clockTime('nope')).toBe('-');
  });

  it('shows the backfill as a bar: indeterminate while looking, rows of the total while running, full after', () => {
    expect(backfillView('backfilling', null, {})).toEqual({ value: null, max: 1, text: 'looking for a peer' });
    expect(backfillView('ready', null, {}).value).toBe(1);
    const progress = {
      source: PEER,
      items: [
        { done: 30, total: 40 },
        { done: 5, total: null },
      ],
    };
    expect(backfillView('backfilling', progress, { [PEER]: 'nas' })).toEqual({
      value: 35,
      max: 40,
      text: '35 of at least 40 rows from nas (87 %)',
    });
    expect(backfillView('ready', progress, {})).toEqual({ value: 1, max: 1, text: 'complete: 35 rows from 5d1c8a3e' });
  });

  it("uses the library's prefix only when the page was asked for under it", () => {
    const at = (originalUrl: string, libraryId?: string) =>
      basePath({ originalUrl } as Request, { locals: { libraryId } } as unknown as Response);
    expect(at('/', LIB)).toBe('');
    expect(at('/?x=1', LIB)).toBe('');
    expect(at(`/libraries/${LIB}/`, LIB)).toBe(`/libraries/${LIB}`);
    expect(at(`/libraries/${LIB.toUpperCase()}/?a=b`, LIB)).toBe(`/libraries/${LIB}`);
    expect(at(`/libraries/${LIB}/`)).toBe('');
  });
});
