import type { SyncStatus } from '@lib/sync';

/**
 * GET /: the device's state for a person, rendered on the server (every value escaped) and kept
 * fresh by a small script that reads /sync/status every 2 s with the page's own credentials (the
 * login cookie of `GET /?token=`).
 */

const ESCAPES: Record<string, string> = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' };

export function escapeHtml(value: unknown): string {
  return String(value ?? '').replace(/[&<>"']/g, (c) => ESCAPES[c]);
}

function peerRows(status: SyncStatus): string {
  if (status.peers.length === 0) return '<tr><td colspan="5">no peers yet</td></tr>';
  return status.peers
    .map(
      (p) =>
        `<tr><td>${escapeHtml(p.deviceName)}</td><td><code>${escapeHtml(p.deviceId)}</code></td>` +
        `<td>${p.online ? 'online' : 'offline'}</td><td>${escapeHtml(p.lastSeenAt ?? '-')}</td>` +
        `<td>${escapeHtml(p.pendingToPeer)}</td></tr>`,
    )
    .join('');
}

/** The same rows in the browser: text nodes only, so nothing a peer names itself becomes markup. */
const REFRESH_SCRIPT = `
const set = (id, v) => { document.getElementById(id).textContent = v ?? '-'; };
async function refresh() {
  try {
    const res = await fetch('/sync/status', { credentials: 'same-origin', headers: { accept: 'application/json' } });
    if (!res.ok) { set('updated', 'HTTP ' + res.status); return; }
    const s = await res.json();
    set('phase', s.phase); set('hlc', s.hlc); set('log', s.sharedLogSize);
    const body = document.getElementById('peers');
    body.replaceChildren();
    for (const p of s.peers) {
      const tr = body.insertRow();
      for (const v of [p.deviceName, p.deviceId, p.online ? 'online' : 'offline', p.lastSeenAt ?? '-', p.pendingToPeer])
        tr.insertCell().textContent = String(v);
    }
    if (s.peers.length === 0) { const c = body.insertRow().insertCell(); c.colSpan = 5; c.textContent = 'no peers yet'; }
    set('updated', new Date().toLocaleTimeString());
  } catch (e) { set('updated', 'unreachable'); }
}
setInterval(refresh, 2000);
`;

export function renderStatusPage(status: SyncStatus, scriptNonce: string): string {
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>${escapeHtml(status.deviceName)}: sync status</title>
<style>
body { font: 14px/1.4 system-ui, sans-serif; margin: 2em; color: #222; }
table { border-collapse: collapse; } td, th { padding: .3em .8em; border-bottom: 1px solid #ddd; text-align: left; }
dt { font-weight: 600; } dd { margin: 0 0 .5em 0; }
</style>
</head>
<body>
<h1>${escapeHtml(status.deviceName)}</h1>
<dl>
<dt>device</dt><dd><code>${escapeHtml(status.deviceId)}</code></dd>
<dt>library</dt><dd><code>${escapeHtml(status.libraryId)}</code></dd>
<dt>phase</dt><dd id="phase">${escapeHtml(status.phase)}</dd>
<dt>clock</dt><dd><code id="hlc">${escapeHtml(status.hlc)}</code></dd>
<dt>shared log</dt><dd id="log">${escapeHtml(status.sharedLogSize)}</dd>
</dl>
<h2>Peers</h2>
<table>
<thead><tr><th>name</th><th>device</th><th>state</th><th>last seen</th><th>pending to peer</th></tr></thead>
<tbody id="peers">${peerRows(status)}</tbody>
</table>
<p><small>updated <span id="updated">${escapeHtml(new Date().toLocaleTimeString('en-GB'))}</span></small></p>
<script nonce="${escapeHtml(scriptNonce)}">${REFRESH_SCRIPT}</script>
</body>
</html>
`;
}
