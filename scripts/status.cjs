#!/usr/bin/env node
// Sync state of running devices, from their GET /sync/status (`npm run status`).
//
//   npm run status                           the three devices of `npm run cluster` (ports 3001-3003)
//   npm run status -- http://host:3001 3002  given devices (a bare port means 127.0.0.1)
//   npm run status -- --watch                refresh every second (Ctrl-C to leave)
//
// With API_TOKEN in the environment or in ./.env, it is sent as `Authorization: Bearer`.
//
// One row per device: phase, clock, shared log size, peers online/total and what each peer still
// has to receive from it; a device that is backfilling also gets a progress bar per model.
'use strict';

const { apiToken, authHeaders } = require('./lib/api-token.cjs');

const DEFAULT_URLS = ['http://127.0.0.1:3001', 'http://127.0.0.1:3002', 'http://127.0.0.1:3003'];
const REQUEST_TIMEOUT_MS = 2000;
const BAR_WIDTH = 30;

function parseArgs(argv) {
  const opts = { watch: false, urls: [] };
  for (const a of argv) {
    if (a === '--watch' || a === '-w') opts.watch = true;
    else if (a === '--help' || a === '-h') opts.help = true;
    else if (/^\d+$/.test(a)) opts.urls.push(`http://127.0.0.1:${a}`);
    else opts.urls.push(a.replace(/\/+$/, '').replace(/^(?!https?:\/\/)/, 'http://'));
  }
  if (opts.urls.length === 0) opts.urls = DEFAULT_URLS;
  return opts;
}

async function fetchStatus(url, token = apiToken()) {
  try {
    const res = await fetch(`${url}/sync/status`, {
      headers: authHeaders(token),
      signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS),
    });
    if (res.status === 401) return { url, error: token ? 'HTTP 401 (wrong API_TOKEN)' : 'HTTP 401 (set API_TOKEN)' };
    if (res.status !== 200) return { url, error: `HTTP ${res.status}` };
    return { url, status: await res.json() };
  } catch (e) {
    const cause = e && e.cause && e.cause.code;
    return {
      url,
      error: cause === 'ECONNREFUSED' ? 'not running' : e.name === 'TimeoutError' ? 'no answer' : e.message,
    };
  }
}

const short = (id) => (typeof id === 'string' ? id.slice(0, 8) : '?');

function table(rows) {
  const widths = rows[0].map((_, i) => Math.max(...rows.map((r) => String(r[i]).length)));
  return rows
    .map((r) =>
      r
        .map((cell, i) => String(cell).padEnd(widths[i]))
        .join('  ')
        .trimEnd(),
    )
    .join('\n');
}

function bar(done, total) {
  if (typeof total !== 'number' || total <= 0) return `${'·'.repeat(BAR_WIDTH)} ${done} (total unknown)`;
  const ratio = Math.max(0, Math.min(1, done / total));
  const filled = Math.round(ratio * BAR_WIDTH);
  return `${'█'.repeat(filled)}${'░'.repeat(BAR_WIDTH - filled)} ${String(Math.round(ratio * 100)).padStart(3)}%  ${done}/${total}`;
}

/** A status's backfill progress as a list of {model, done, total}, whatever its exact shape. */
function backfillItems(backfill) {
  if (!backfill || typeof backfill !== 'object') return [];
  const list = Array.isArray(backfill)
    ? backfill
    : Array.isArray(backfill.items)
      ? backfill.items
      : Array.isArray(backfill.models)
        ? backfill.models
        : null;
  if (list) return list.filter((i) => i && typeof i === 'object');
  return Object.entries(backfill)
    .filter(([, v]) => v && typeof v === 'object' && 'done' in v)
    .map(([model, v]) => ({ model, ...v }));
}

function render(results) {
  const rows = [['DEVICE', 'URL', 'PHASE', 'HLC', 'LOG', 'PEERS', 'PENDING TO PEER']];
  const extra = [];
  for (const { url, status, error } of results) {
    if (error) {
      rows.push(['-', url, error, '', '', '', '']);
      continue;
    }
    const peers = Array.isArray(status.peers) ? status.peers : [];
    const online = peers.filter((p) => p.online).length;
    const pending = peers
      .map((p) => `${p.deviceName || short(p.deviceId)}${p.online ? '' : ' (offline)'}: ${p.pendingToPeer}`)
      .join(', ');
    rows.push([
      `${status.deviceName} (${short(status.deviceId)})`,
      url,
      status.phase,
      // the clock's node part is the device itself: the time and counter are what tell devices apart
      typeof status.hlc === 'string' && status.hlc.endsWith(`-${status.deviceId}`)
        ? status.hlc.slice(0, -status.deviceId.length - 1)
        : status.hlc,
      status.sharedLogSize,
      `${online}/${peers.length}`,
      pending || '-',
    ]);
    const items = status.phase === 'backfilling' ? backfillItems(status.backfill) : [];
    if (items.length) {
      const source = status.backfill && status.backfill.source ? ` from ${short(status.backfill.source)}` : '';
      extra.push(`\n${status.deviceName} backfilling${source}:`);
      const labels = items.map((i) =>
        i.owner && i.owner !== '*' ? `${i.model} of ${short(i.owner)}` : String(i.model),
      );
      const width = Math.max(...labels.map((l) => l.length));
      items.forEach((i, n) => extra.push(`  ${labels[n].padEnd(width)}  ${bar(Number(i.done) || 0, i.total)}`));
    }
  }
  return `${table(rows)}${extra.length ? `\n${extra.join('\n')}` : ''}`;
}

async function snapshot(urls) {
  return render(await Promise.all(urls.map((u) => fetchStatus(u))));
}

async function main() {
  const opts = parseArgs(process.argv.slice(2));
  if (opts.help) {
    console.log('usage: npm run status -- [--watch] [URL|PORT ...]   (default: the three devices of npm run cluster)');
    return;
  }
  if (!opts.watch) {
    const results = await Promise.all(opts.urls.map((u) => fetchStatus(u)));
    console.log(render(results));
    if (results.every((r) => r.error)) process.exitCode = 1;
    return;
  }
  process.on('SIGINT', () => {
    process.stdout.write('\n');
    process.exit(0);
  });
  for (;;) {
    const started = Date.now();
    const text = await snapshot(opts.urls);
    // clear the screen and redraw in place
    process.stdout.write(
      `\x1b[H\x1b[2J${new Date().toISOString()}  (refreshing every second, Ctrl-C to stop)\n\n${text}\n`,
    );
    await new Promise((r) => setTimeout(r, Math.max(0, 1000 - (Date.now() - started))));
  }
}

module.exports = { render, backfillItems, bar, parseArgs };

if (require.main === module) {
  main().catch((e) => {
    console.error(e.message);
    process.exit(1);
  });
}
