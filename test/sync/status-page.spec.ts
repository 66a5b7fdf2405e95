import { tmpdir } from 'node:os';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync } from 'node:fs';
import { randomUUID } from 'node:crypto';
import { dirname, join } from 'node:path';
import { Browser, chromium, Page } from 'playwright-core';
import { clusterPerTest } from '../support/cluster';
import { waitFor } from '../support/device-harness';
import { createEntries, createLocation } from '../support/fixtures';
import { FIRST_CHANGES, RECENT_CHANGES } from '../../src/library/status/status-page';

/**
 * Issue "Status page": GET / in a real browser (Debian's chromium, headless, driven by
 * playwright-core). Device A's page, opened through the API token's login, follows a write on
 * device B live: the change in its recent changes, B online with its pending and lag, phase ready,
 * its clock moved on, the backfill bar. The screenshot is docs/status-page.png (the README's).
 */

const TOKEN = `page-${randomUUID()}`;
/** docs/status-page.png (the README's) with UPDATE_SCREENSHOTS=1, else a file in the temp dir. */
const SCREENSHOT =
  process.env.UPDATE_SCREENSHOTS === '1'
    ? join(__dirname, '..', '..', 'docs', 'status-page.png')
    : join(tmpdir(), `status-page-${process.pid}.png`);

/** CHROMIUM_PATH, else chromium on the PATH; a missing browser fails the test (CI installs it). */
function chromiumPath(): string {
  const given = process.env.CHROMIUM_PATH;
  if (given) {
    if (!existsSync(given)) throw new Error(`CHROMIUM_PATH=${given}: no such file`);
    return given;
  }
  for (const name of ['chromium', 'chromium-browser']) {
    try {
      const found = execFileSync('sh', ['-c', `command -v ${name}`], { encoding: 'utf8' }).trim();
      if (found) return found;
    } catch {
      // not this one
    }
  }
  throw new Error(
    'the status page test needs Chromium: install it (Debian: apt-get install -y chromium; .ci/run does) or set CHROMIUM_PATH',
  );
}

/** What the page shows now, read from its DOM. */
interface Shown {
  phase: string;
  live: string;
  hlc: string;
  backfill: { present: boolean; value: number | null; max: number; text: string };
  log: string;
  dead: string;
  peers: { id: string; cells: string[] }[];
  changes: { model: string; id: string; cells: string[] }[];
}

/** Runs in the page (the browser's DOM: no DOM types in this project, hence the `any`). */
function shown(page: Page): Promise<Shown> {
  return page.evaluate((): Shown => {
    const doc = (globalThis as any).document;
    const text = (id: string): string => doc.getElementById(id)?.textContent ?? '';
    const bar = doc.getElementById('backfill-bar');
    const rows = (id: string): any[] => [...doc.getElementById(id).rows];
    const cells = (r: any): string[] => [...r.cells].map((c: any) => c.textContent ?? '');
    return {
      phase: text('phase'),
      live: text('live'),
      hlc: text('hlc'),
      backfill: {
        present: bar !== null,
        value: bar?.hasAttribute('value') ? bar.value : null,
        max: bar?.max ?? 0,
        text: text('backfill-text'),
      },
      log: text('log'),
      dead: text('dead'),
      peers: rows('peers')
        .filter((r) => r.dataset.deviceId)
        .map((r) => ({ id: r.dataset.deviceId, cells: cells(r) })),
      changes: rows('changes')
        .filter((r) => r.dataset.id)
        .map((r) => ({ model: r.dataset.model, id: r.dataset.id, cells: cells(r) })),
    };
  });
}

describe('status page: GET / in headless Chromium', () => {
  const newCluster = clusterPerTest({ heartbeatIntervalMs: 500 });
  let browser: Browser | null = null;
  afterEach(async () => {
    await browser?.close();
    browser = null;
  });

  it('follows a write on another device live, behind the API token', async () => {
    const executablePath = chromiumPath();
    const cluster = await newCluster();
    // B holds some data; A joins afterwards and backfills it (its page shows that backfill)
    const b = await cluster.device('nas');
    const shelf = await createLocation(b, 'photos');
    await createEntries(b, shelf, 20, 'old');
    const [a] = await Promise.all([
      cluster.device('laptop', { apiToken: TOKEN }),
      (async () => {
        browser = await chromium.launch({ executablePath, args: ['--no-sandbox'] });
      })(),
    ]);
    const context = await browser!.newContext({ viewport: { width: 1200, height: 800 } });
    const page = await context.newPage();

    // without the login the page is refused; `?token=` logs in and lands on / (the token gone from the URL)
    expect((await page.goto(`${a.url}/`))?.status()).toBe(401);
    const login = await page.goto(`${a.url}/?token=${encodeURIComponent(TOKEN)}`);
    expect(login?.status()).toBe(200);
    expect(page.url()).toBe(`${a.url}/`);
    expect(await page.title()).toBe('laptop: sync status');

    // live: the feed is open (with the cookie), B is listed online, the backfill bar full
    const first = (await waitFor(
      'the page live, with B online',
      async () => {
        const s = await shown(page);
        const peer = s.peers.find((p) => p.id === b.deviceId);
        return s.live === 'live' && peer?.cells[2] === 'online' ? s : null;
      },
      20_000,
      100,
    ))!;
    expect(first.phase).toBe('ready');
    expect(first.backfill.present).toBe(true);
    expect(first.backfill.value).toBe(first.backfill.max);
    expect(first.backfill.text).toBe('complete: 21 rows from nas');
    expect(first.dead).toBe('0');

    // B writes; A's page shows it without a reload
    const [entry] = await createEntries(b, shelf, 1, 'new', 100);
    const after = (await waitFor(
      "B's entry on A's page, B caught up",
      async () => {
        const s = await shown(page);
        const change = s.changes.find((c) => c.model === 'entries' && c.id === entry);
        const peer = s.peers.find((p) => p.id === b.deviceId);
        // name, device, state, last seen, pending, lag, agreed
        const upToDate = peer?.cells[2] === 'online' && peer.cells[4] === '0' && peer.cells[5] === '0 ms';
        return change && upToDate && s.hlc > first.hlc ? { s, change, peer } : null;
      },
      20_000,
      100,
    ))!;
    expect(after.change.cells.slice(1)).toEqual(['entries', 'upsert', entry, 'nas']);
    expect(after.peer.cells[0]).toBe('nas');
    expect(after.s.phase).toBe('ready');
    expect(after.s.log).toMatch(/^\d+$/);
    // the page opened with the newest changes of A's feed already listed (the backfill wrote them)
    expect(after.s.changes.length).toBeGreaterThanOrEqual(FIRST_CHANGES + 1);
    expect(after.s.changes.length).toBeLessThanOrEqual(RECENT_CHANGES);

    mkdirSync(dirname(SCREENSHOT), { recursive: true });
    await page.screenshot({ path: SCREENSHOT });
    expect(existsSync(SCREENSHOT)).toBe(true);
  }, 60_000);
});
