#!/usr/bin/env node
// A local library of three devices on embedded PGlite (`npm run cluster`).
//
// - one library id, kept in ./data/library-id so a restart brings back the same library, and its
//   pre-shared key (LIBRARY_KEY), kept in ./data/library-key unless LIBRARY_KEY is set
// - device-a, device-b, device-c on ports 3001-3003, embedded data under ./data/<name>
// - NATS_URL from the environment, else nats://127.0.0.1:4222; when no server answers there a
//   local `nats-server -js` is started with its store under ./data/nats
// - Ctrl-C (SIGINT) or SIGTERM stops the devices gracefully, then the NATS server it started
// - the devices listen on 127.0.0.1; API_TOKEN (from the environment or ./.env), when set, is
//   given to every device and sent by this script (README "Who may call the API")
//
// - `--nats-cluster`: three local nats-servers clustered with JetStream (client ports 4222-4224,
//   routes 6222-6224, stores under ./data/nats-1..3); the devices get all three in NATS_URL and
//   SYNC_STREAM_REPLICAS=3, so the library's stream survives losing any one of them
//
// Logs go to ./data/<name>.log (and ./data/nats.log); `--logs` streams them here as well.
'use strict';

const { spawn } = require('node:child_process');
const { randomBytes, randomUUID } = require('node:crypto');
const fs = require('node:fs');
const net = require('node:net');
const path = require('node:path');
const { apiToken, authHeaders } = require('./lib/api-token.cjs');

const ROOT = path.join(__dirname, '..');
const DATA = path.join(ROOT, 'data');
const MAIN = path.join(ROOT, 'dist', 'main.js');
const DEVICES = [
  { name: 'device-a', port: 3001 },
  { name: 'device-b', port: 3002 },
  { name: 'device-c', port: 3003 },
];
const HEALTH_TIMEOUT_MS = 120_000;
const STOP_TIMEOUT_MS = 15_000;
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
const streamLogs = process.argv.includes('--logs');
const natsCluster = process.argv.includes('--nats-cluster');
const NATS_CLUSTER = [1, 2, 3].map((i) => ({ name: `nats-${i}`, port: 4221 + i, route: 6221 + i }));

/** Children we started, in start order: devices are stopped first, NATS last. */
const children = [];
let stopping = false;
/** Until every device has answered once, a device that exits is reported by the start-up wait. */
let starting = true;

function say(msg) {
  console.log(`[cluster] ${msg}`);
}

function fail(msg) {
  console.error(`[cluster] ${msg}`);
  process.exitCode = 1;
  void stopAll();
}

function libraryId() {
  const file = path.join(DATA, 'library-id');
  if (fs.existsSync(file)) {
    const id = fs.readFileSync(file, 'utf8').trim();
    if (!UUID.test(id)) throw new Error(`${file} does not hold a uuid; delete it to start a new library`);
    return id;
  }
  const id = randomUUID();
  fs.writeFileSync(file, `${id}\n`);
  return id;
}

/** The library's pre-shared key (LIBRARY_KEY), made once and kept beside the id in ./data/library-key. */
function libraryKey() {
  const file = path.join(DATA, 'library-key');
  if (fs.existsSync(file)) return fs.readFileSync(file, 'utf8').trim();
  const key = randomBytes(32).toString('base64');
  fs.writeFileSync(file, `${key}\n`, { mode: 0o600 });
  return key;
}

function portOpen(host, port, timeoutMs = 1000) {
  return new Promise((resolve) => {
    const s = net.connect({ host, port });
    const done = (ok) => {
      s.destroy();
      resolve(ok);
    };
    s.setTimeout(timeoutMs, () => done(false));
    s.once('connect', () => done(true));
    s.once('error', () => done(false));
  });
}

async function until(what, fn, timeoutMs, everyMs = 200) {
  const end = Date.now() + timeoutMs;
  while (!stopping) {
    if (await fn()) return;
    if (Date.now() > end) throw new Error(`timed out after ${timeoutMs / 1000} s waiting for ${what}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

/** nats://host:port (or host:port) → { host, port }. */
function natsAddress(server) {
  const u = new URL(server.includes('://') ? server : `nats://${server}`);
  return { host: u.hostname, port: Number(u.port || 4222) };
}

function findExecutable(name) {
  const dirs = [...(process.env.PATH || '').split(path.delimiter), '/usr/sbin', '/usr/local/sbin', '/usr/local/bin'];
  for (const dir of dirs) {
    const file = path.join(dir, name);
    try {
      fs.accessSync(file, fs.constants.X_OK);
      return file;
    } catch {
      // not here
    }
  }
  return null;
}

function tail(file, lines = 15) {
  try {
    return fs.readFileSync(file, 'utf8').trimEnd().split('\n').slice(-lines).join('\n');
  } catch {
    return '(no log)';
  }
}

/** Starts a child in its own process group, so a terminal's Ctrl-C reaches it once, from us. */
function start(name, command, args, env, logFile) {
  const log = fs.openSync(logFile, 'a');
  const child = spawn(command, args, {
    cwd: ROOT,
    env,
    detached: true,
    stdio: ['ignore', streamLogs ? 'pipe' : log, streamLogs ? 'pipe' : log],
  });
  if (streamLogs) {
    for (const stream of [child.stdout, child.stderr]) {
      let rest = '';
      stream.on('data', (chunk) => {
        fs.writeSync(log, chunk);
        const lines = (rest + chunk).split('\n');
        rest = lines.pop();
        for (const line of lines) console.log(`[${name}] ${line}`);
      });
    }
  }
  const entry = {
    name,
    child,
    logFile,
    exited: new Promise((resolve) => child.once('exit', (code, signal) => resolve(code ?? signal))),
  };
  entry.exited.then((result) => {
    fs.closeSync(log);
    if (!stopping && !starting) {
      console.error(
        `[cluster] ${name} exited (${result}) on its own; last lines of ${path.relative(ROOT, logFile)}:\n${tail(logFile)}`,
      );
      if (
        children.filter((c) => c.name !== 'nats-server' && c.child.exitCode === null && c.child.signalCode === null)
          .length === 0
      ) {
        fail('no device left running');
      }
    }
  });
  child.once('error', (e) => fail(`${name}: cannot start ${command}: ${e.message}`));
  children.push(entry);
  return entry;
}

async function ensureNats(natsUrl) {
  const servers = natsUrl
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);
  for (const s of servers) {
    const { host, port } = natsAddress(s);
    if (await portOpen(host, port)) {
      say(`using NATS at ${s}`);
      return;
    }
  }
  const { host, port } = natsAddress(servers[0]);
  if (!['127.0.0.1', 'localhost', '::1'].includes(host)) {
    say(`no NATS answers at ${natsUrl}; the devices serve local reads and writes and sync once it is back`);
    return;
  }
  const bin = findExecutable('nats-server');
  if (!bin) {
    throw new Error(
      `no NATS answers at ${natsUrl} and nats-server is not installed: install it (Debian: apt-get install nats-server), ` +
        'or start one with JetStream (nats-server -js), or set NATS_URL to a running server',
    );
  }
  const storeDir = path.join(DATA, 'nats');
  fs.mkdirSync(storeDir, { recursive: true });
  say(`no NATS at ${natsUrl}: starting ${bin} -js on ${host}:${port} (store ${path.relative(ROOT, storeDir)})`);
  const nats = start(
    'nats-server',
    bin,
    ['-js', '-a', host === 'localhost' ? '127.0.0.1' : host, '-p', String(port), '-sd', storeDir],
    process.env,
    path.join(DATA, 'nats.log'),
  );
  await until(
    `nats-server on ${host}:${port}`,
    async () => {
      if (nats.child.exitCode !== null) throw new Error(`nats-server exited: ${tail(nats.logFile)}`);
      return portOpen(host, port);
    },
    15_000,
    100,
  );
}

/** Three clustered nats-servers with JetStream on this machine (--nats-cluster); returns their URLs. */
async function startNatsCluster() {
  const bin = findExecutable('nats-server');
  if (!bin) throw new Error('--nats-cluster needs nats-server (Debian: apt-get install nats-server)');
  for (const n of NATS_CLUSTER) {
    if (await portOpen('127.0.0.1', n.port)) throw new Error(`port ${n.port} is taken: --nats-cluster uses 4222-4224`);
    const dir = path.join(DATA, n.name);
    fs.mkdirSync(dir, { recursive: true });
    const routes = NATS_CLUSTER.filter((o) => o !== n).map((o) => `nats://127.0.0.1:${o.route}`);
    const conf = path.join(dir, 'nats.conf');
    fs.writeFileSync(
      conf,
      `server_name: ${n.name}\nhost: 127.0.0.1\nport: ${n.port}\n` +
        `jetstream { store_dir: "${path.join(dir, 'js')}" }\n` +
        `cluster { name: local, host: 127.0.0.1, port: ${n.route}, routes: [${routes.join(', ')}] }\n`,
    );
    start('nats-server', bin, ['-c', conf], process.env, path.join(DATA, `${n.name}.log`));
  }
  for (const n of NATS_CLUSTER)
    await until(`${n.name} on port ${n.port}`, () => portOpen('127.0.0.1', n.port), 15_000, 100);
  say(`NATS cluster of three: ${NATS_CLUSTER.map((n) => `${n.name} :${n.port}`).join(', ')} (logs: data/nats-N.log)`);
  return NATS_CLUSTER.map((n) => `nats://127.0.0.1:${n.port}`).join(',');
}

/** Up: /health answers (it needs no token) and, with a token, the token is accepted. */
async function health(url, token) {
  try {
    const res = await fetch(`${url}/health`, { signal: AbortSignal.timeout(2000) });
    if (res.status !== 200) return false;
    if (!token) return true;
    const status = await fetch(`${url}/sync/status`, {
      headers: authHeaders(token),
      signal: AbortSignal.timeout(2000),
    });
    if (status.status === 401) throw new Error(`${url} refuses API_TOKEN`);
    return status.status === 200;
  } catch {
    return false; // not listening yet
  }
}

async function stopAll(signal = 'SIGTERM') {
  if (stopping) return;
  stopping = true;
  const devices = children.filter((c) => c.name !== 'nats-server');
  const nats = children.filter((c) => c.name === 'nats-server');
  for (const group of [devices, nats]) {
    const running = group.filter((c) => c.child.exitCode === null && c.child.signalCode === null);
    if (running.length) say(`stopping ${running.map((c) => c.name).join(', ')}`);
    for (const c of running) c.child.kill(signal);
    const timer = setTimeout(() => {
      for (const c of running) if (c.child.exitCode === null) c.child.kill('SIGKILL');
    }, STOP_TIMEOUT_MS);
    const results = await Promise.all(running.map((c) => c.exited));
    clearTimeout(timer);
    running.forEach((c, i) => {
      if (results[i] !== 0) process.exitCode = 1;
    });
  }
  process.exit();
}

async function main() {
  process.on('SIGINT', () => (stopping ? forceStop() : void stopAll('SIGINT')));
  process.on('SIGTERM', () => void stopAll('SIGTERM'));

  if (!fs.existsSync(MAIN))
    throw new Error(`${path.relative(ROOT, MAIN)} is missing: run \`npm run build\` (npm run cluster does)`);
  fs.mkdirSync(DATA, { recursive: true });
  const library = libraryId();
  say(`library ${library} (kept in data/library-id)`);
  let natsUrl = process.env.NATS_URL || 'nats://127.0.0.1:4222';
  if (natsCluster) natsUrl = await startNatsCluster();
  else await ensureNats(natsUrl);

  const base = { ...process.env };
  // the cluster is embedded by definition: nothing from the caller's shell may redirect a device
  for (const k of ['DEVICE_ID', 'DATABASE_URL', 'DATA_DIR', 'PORT', 'DEVICE_NAME', 'LIBRARY_ID', 'LIBRARY_INVITE'])
    delete base[k];
  // local devices: loopback, with the one token this script also sends ('' overrides ./.env)
  const token = apiToken(ROOT);
  Object.assign(base, { HOST: '127.0.0.1', API_TOKEN: token ?? '', API_ALLOWED_ORIGINS: '' });
  if (token) say('API_TOKEN is set: the devices require it (open http://127.0.0.1:3001/?token=… in a browser)');
  // the devices share the pre-shared key (LIBRARY_KEY from the environment, else ./data/library-key)
  const key = process.env.LIBRARY_KEY || libraryKey();
  const devices = DEVICES.map((d) =>
    Object.assign(
      start(
        d.name,
        process.execPath,
        [MAIN],
        {
          ...base,
          LIBRARY_ID: library,
          LIBRARY_KEY: key,
          DEVICE_NAME: d.name,
          DATA_DIR: path.join(DATA, d.name),
          NATS_URL: natsUrl,
          ...(natsCluster ? { SYNC_STREAM_REPLICAS: '3' } : {}),
          PORT: String(d.port),
        },
        path.join(DATA, `${d.name}.log`),
      ),
      { url: `http://127.0.0.1:${d.port}` },
    ),
  );

  await Promise.all(
    devices.map(async (d) => {
      await until(
        `${d.name} at ${d.url}/health`,
        async () => {
          if (d.child.exitCode !== null) throw new Error(`${d.name} exited at start:\n${tail(d.logFile)}`);
          return health(d.url, token);
        },
        HEALTH_TIMEOUT_MS,
      );
      if (!stopping) say(`${d.name.padEnd(9)} ${d.url}   (log: data/${d.name}.log)`);
    }),
  );
  starting = false;
  if (!stopping) say('all devices up. `npm run status -- --watch` shows their sync state; Ctrl-C stops the cluster');
}

function forceStop() {
  say('stopping now (second interrupt)');
  for (const c of children) if (c.child.exitCode === null) c.child.kill('SIGKILL');
  process.exit(1);
}

main().catch((e) => fail(e.message));
