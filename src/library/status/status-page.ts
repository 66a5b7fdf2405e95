import type { BackfillProgressView, SyncStatus } from './status-view';
import { backfillView, clockTime, formatDuration, shortId } from './status-view';

/**
 * GET /: the device's state for a person. Rendered on the server (every value escaped, so it reads
 * without a script), then kept live by a small script: it follows the change feed (GET
 * /sync/events, listed under "Recent changes") and re-reads /sync/status after each change
 * (throttled) and every few seconds (phase and presence change without a change event). Both go
 * with the page's own credentials (the login cookie of `GET /?token=`) to the URLs of the library
 * the page was served for (`base`: '' or `/libraries/:libraryId`). The script writes text nodes
 * only: nothing a peer names itself becomes markup.
 */

const ESCAPES: Record<string, string> = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' };

export function escapeHtml(value: unknown): string {
  return String(value ?? '').replace(/[&<>"']/g, (c) => ESCAPES[c]);
}

export interface StatusPageOptions {
  /** The nonce of the page's one script (its Content-Security-Policy). */
  nonce: string;
  /** '' for the unprefixed routes, else `/libraries/:libraryId`. */
  base: string;
  /** The change feed's sequence to start after (the newest changes are listed at once). */
  feedAfter: string;
}

/** How many changes "Recent changes" keeps, and how many of the newest it starts with. */
export const RECENT_CHANGES = 25;
export const FIRST_CHANGES = 10;

const PEER_COLUMNS = ['name', 'device', 'state', 'last seen', 'pending to peer', 'lag', 'agreed'];

function peerCells(p: SyncStatus['peers'][number], now: number): string[] {
  return [
    p.deviceName,
    shortId(p.deviceId),
    p.online ? 'online' : 'offline',
    p.lastSeenAt ? `${formatDuration(now - Date.parse(p.lastSeenAt))} ago` : 'never',
    String(p.pendingToPeer),
    formatDuration(p.lagMs ?? null),
    p.agreedAt ? 'yes' : '-',
  ];
}

function peerRows(status: SyncStatus, now: number): string {
  if (status.peers.length === 0) return `<tr><td colspan="${PEER_COLUMNS.length}">no peers yet</td></tr>`;
  return status.peers
    .map(
      (p) =>
        `<tr data-device-id="${escapeHtml(p.deviceId)}" class="${p.online ? 'online' : 'offline'}">` +
        peerCells(p, now)
          .map((v) => `<td>${escapeHtml(v)}</td>`)
          .join('') +
        '</tr>',
    )
    .join('');
}

function backfillHtml(status: SyncStatus): string {
  const v = backfillView(status.phase, status.backfill as BackfillProgressView | null, peerNames(status));
  const value = v.value === null ? '' : ` value="${v.value}"`;
  return `<progress id="backfill-bar" max="${v.max}"${value}></progress><span id="backfill-text">${escapeHtml(v.text)}</span>`;
}

function peerNames(status: SyncStatus): Record<string, string> {
  return Object.fromEntries(status.peers.map((p) => [p.deviceId, p.deviceName]));
}

/**
 * The browser's side: the same formatting functions as the server's (their source), then the feed
 * and the refresh. Values from the device only ever reach textContent.
 */
const SCRIPT = `
${[formatDuration, clockTime, shortId, backfillView].map((f) => f.toString()).join('\n')}
const PEER_COLUMNS = ${PEER_COLUMNS.length};
const RECENT = ${RECENT_CHANGES};
const page = document.body.dataset;
const base = page.base;
const $ = (id) => document.getElementById(id);
const set = (id, v) => { $(id).textContent = v ?? '-'; };
let names = {};
for (const tr of $('peers').rows) if (tr.dataset.deviceId) names[tr.dataset.deviceId] = tr.cells[0].textContent;
const deviceId = page.deviceId;

function render(s) {
  names = Object.fromEntries(s.peers.map((p) => [p.deviceId, p.deviceName]));
  set('phase', s.phase); $('phase').className = 'phase ' + s.phase;
  set('hlc', s.hlc); set('hlc-time', clockTime(s.hlc));
  set('nats', s.natsConnected ? 'connected' : 'disconnected');
  set('log', s.sharedLogSize); set('dead', s.deadLetters);
  $('dead').className = s.deadLetters > 0 ? 'warn' : '';
  const b = backfillView(s.phase, s.backfill, names);
  const bar = $('backfill-bar');
  bar.max = b.max;
  if (b.value === null) bar.removeAttribute('value'); else bar.value = b.value;
  set('backfill-text', b.text);
  const now = Date.now();
  const body = $('peers');
  body.replaceChildren();
  for (const p of s.peers) {
    const tr = body.insertRow();
    tr.dataset.deviceId = p.deviceId; tr.className = p.online ? 'online' : 'offline';
    for (const v of [p.deviceName, shortId(p.deviceId), p.online ? 'online' : 'offline',
      p.lastSeenAt ? formatDuration(now - Date.parse(p.lastSeenAt)) + ' ago' : 'never',
      String(p.pendingToPeer), formatDuration(p.lagMs ?? null), p.agreedAt ? 'yes' : '-'])
      tr.insertCell().textContent = v;
  }
  if (s.peers.length === 0) { const c = body.insertRow().insertCell(); c.colSpan = PEER_COLUMNS; c.textContent = 'no peers yet'; }
  set('updated', new Date().toLocaleTimeString('en-GB'));
}

let inFlight = false, again = false, lastRefresh = 0, timer = null;
async function refresh() {
  if (inFlight) { again = true; return; }
  inFlight = true; lastRefresh = Date.now();
  try {
    const res = await fetch(base + '/sync/status', { credentials: 'same-origin', headers: { accept: 'application/json' } });
    if (res.ok) render(await res.json());
    else set('updated', 'HTTP ' + res.status + (res.status === 401 ? ': log in again with ?token=' : ''));
  } catch (e) { set('updated', 'unreachable'); }
  inFlight = false;
  if (again) { again = false; soon(); }
}
/** At most one refresh per 300 ms, however many changes arrive. */
function soon() {
  if (timer) return;
  timer = setTimeout(() => { timer = null; refresh(); }, Math.max(0, lastRefresh + 300 - Date.now()));
}
setInterval(refresh, 3000);

function addChange(c) {
  const list = $('changes');
  if (list.dataset.empty) { list.replaceChildren(); delete list.dataset.empty; }
  const tr = list.insertRow(0);
  tr.dataset.model = c.model; tr.dataset.id = c.id;
  const from = c.origin === deviceId ? 'this device' : names[c.origin] ?? shortId(c.origin ?? '-');
  for (const v of [String(c.seq), c.model, c.op, c.id, from])
    tr.insertCell().textContent = v;
  while (list.rows.length > RECENT) list.deleteRow(-1);
}

const after = page.feedAfter;
const feed = new EventSource(base + '/sync/events' + (after ? '?lastEventId=' + encodeURIComponent(after) : ''));
feed.onopen = () => { set('live', 'live'); $('live').className = 'live on'; refresh(); };
// the browser reconnects by itself (with Last-Event-ID) unless the device refused the feed
feed.onerror = () => {
  set('live', feed.readyState === EventSource.CLOSED ? 'not live: polling' : 'reconnecting');
  $('live').className = 'live off';
};
feed.onmessage = (m) => { try { addChange(JSON.parse(m.data)); } catch (e) {} soon(); };
`;

export function renderStatusPage(status: SyncStatus, o: StatusPageOptions): string {
  const now = Date.now();
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>${escapeHtml(status.deviceName)}: sync status</title>
<style>
body { font: 14px/1.45 system-ui, sans-serif; margin: 1.2em 1.5em; color: #222; background: #fafafa; }
h1 { margin: 0 .4em 0 0; font-size: 1.6em; display: inline; } h2 { font-size: 1.05em; margin: 1.2em 0 .4em; }
header { display: flex; align-items: center; gap: .6em; flex-wrap: wrap; }
.phase, .live { padding: .15em .6em; border-radius: 1em; font-size: .9em; background: #ddd; }
.phase.ready { background: #cdeccd; } .phase.backfilling, .phase.catching_up { background: #fde7b0; }
.phase.removed, .phase.uninitialized { background: #f6c9c9; }
.live.on { background: #d8e8fb; } .live.off { background: #f6c9c9; }
.cards { display: flex; gap: .8em; flex-wrap: wrap; margin-top: 1em; }
.card code { font-size: .85em; }
.card { background: #fff; border: 1px solid #ddd; border-radius: 6px; padding: .5em 1em; }
.card h2 { margin-top: .2em; }
dl { display: grid; grid-template-columns: auto 1fr; gap: .15em 1em; margin: 0; } dt { color: #666; } dd { margin: 0; }
progress { width: 18em; height: 1.1em; display: block; margin: .3em 0; }
table { border-collapse: collapse; background: #fff; } td, th { padding: .25em .8em; border-bottom: 1px solid #e3e3e3; text-align: left; }
th { color: #666; font-weight: 600; } tr.offline { color: #999; } code, #changes td:nth-child(4) { font-family: ui-monospace, monospace; font-size: .92em; }
.warn { color: #b00; font-weight: 600; } footer { margin-top: 1.5em; color: #777; font-size: .9em; }
</style>
</head>
<body data-base="${escapeHtml(o.base)}" data-device-id="${escapeHtml(status.deviceId)}" data-feed-after="${escapeHtml(o.feedAfter)}">
<header><h1>${escapeHtml(status.deviceName)}</h1>
<span id="phase" class="phase ${escapeHtml(status.phase)}">${escapeHtml(status.phase)}</span>
<span id="live" class="live">not live</span></header>
<div class="cards">
<section class="card"><h2>This device</h2><dl>
<dt>device</dt><dd><code>${escapeHtml(status.deviceId)}</code></dd>
<dt>library</dt><dd><code>${escapeHtml(status.libraryId)}</code></dd>
<dt>clock</dt><dd><code id="hlc">${escapeHtml(status.hlc)}</code><br><span id="hlc-time">${escapeHtml(clockTime(status.hlc))}</span></dd>
<dt>NATS</dt><dd id="nats">${status.natsConnected ? 'connected' : 'disconnected'}</dd>
</dl></section>
<section class="card"><h2>Backfill</h2>${backfillHtml(status)}</section>
<section class="card"><h2>Storage</h2><dl>
<dt>shared log</dt><dd><span id="log">${escapeHtml(status.sharedLogSize)}</span> rows</dd>
<dt>dead letters</dt><dd id="dead" class="${status.deadLetters > 0 ? 'warn' : ''}">${escapeHtml(status.deadLetters)}</dd>
</dl></section>
</div>
<h2>Peers</h2>
<table>
<thead><tr>${PEER_COLUMNS.map((c) => `<th>${c}</th>`).join('')}</tr></thead>
<tbody id="peers">${peerRows(status, now)}</tbody>
</table>
<h2>Recent changes</h2>
<table>
<thead><tr><th>seq</th><th>model</th><th>op</th><th>id</th><th>from</th></tr></thead>
<tbody id="changes" data-empty="1"><tr><td colspan="5">none yet</td></tr></tbody>
</table>
<footer>updated <span id="updated">${escapeHtml(new Date(now).toLocaleTimeString('en-GB'))}</span> ·
<a href="${escapeHtml(o.base)}/sync/status">/sync/status</a> · <a href="${escapeHtml(o.base)}/sync/events">/sync/events</a></footer>
<script nonce="${escapeHtml(o.nonce)}">${SCRIPT}</script>
</body>
</html>
`;
}
