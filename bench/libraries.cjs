#!/usr/bin/env node
// Many libraries on one device (API.md "Libraries"): a device process on Postgres opens
// BENCH_LIBRARIES libraries (default 50) at runtime with POST /libraries, then idles. Prints the
// time to open one (p50, p95), the memory each open library adds, the idle CPU, and the device's
// NATS connections, beside the same figures of the device holding one library (the baseline).
//   npm run build && node bench/libraries.cjs
const { spawn } = require('node:child_process');
const { randomBytes, randomUUID } = require('node:crypto');
const { mkdtempSync, openSync, readFileSync, rmSync } = require('node:fs');
const { tmpdir } = require('node:os');
const { join } = require('node:path');
const { freePort, scratchDatabases, startNatsServer, stopChildren } = require('../scripts/lib/local.cjs');

const ROOT = join(__dirname, '..');
const PG = process.env.BENCH_PG_URL || process.env.TEST_PG_URL || 'postgres://postgres@127.0.0.1:5432/postgres';
const N = Number(process.env.BENCH_LIBRARIES || 50);
const IDLE_S = Number(process.env.BENCH_IDLE_SECONDS || 20);
const dir = mkdtempSync(join(tmpdir(), 'bench-libraries-'));
const children = [];
const dbs = scratchDatabases(PG);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const TICKS = 100; // clock ticks per second of /proc/<pid>/stat (Linux's USER_HZ)

function rssMb(pid) {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return Number(m[1]) / 1024;
}
function cpuSeconds(pid) {
  const f = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
  return (Number(f[11]) + Number(f[12])) / TICKS; // utime + stime
}
async function idleCpu(pid, seconds) {
  const c0 = cpuSeconds(pid);
  const t0 = Date.now();
  await sleep(seconds * 1000);
  return (cpuSeconds(pid) - c0) / ((Date.now() - t0) / 1000);
}
const pct = (xs, p) => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor((p / 100) * xs.length))];

async function connections(nats, name) {
  const r = await (await fetch(`${nats.monitor}/connz?limit=10000`)).json();
  return (r.connections ?? []).filter((c) => c.name === name).length;
}

async function req(url, method, path, body) {
  const r = await fetch(`${url}${path}`, {
    method,
    headers: { 'content-type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await r.text();
  if (r.status >= 300) throw new Error(`${method} ${path}: ${r.status} ${text}`);
  return JSON.parse(text);
}

async function main() {
  const nats = await startNatsServer(dir, children, { monitor: true });
  const name = 'bench-libraries';
  const port = await freePort();
  const url = `http://127.0.0.1:${port}`;
  const log = openSync(join(dir, 'device.log'), 'a');
  const env = {
    ...process.env,
    DEVICE_NAME: name,
    PORT: String(port),
    DATABASE_URL: await dbs.create(`bench_libraries_${process.pid}`),
    NATS_URL: nats.url,
    LIBRARY_ID: randomUUID(),
    LIBRARY_KEY: randomBytes(32).toString('base64'),
    // on loopback without a token, whatever a .env in the working directory says (empty wins over it)
    HOST: '127.0.0.1',
    API_TOKEN: '',
  };
  const profile = process.env.BENCH_PROFILE_DIR
    ? ['--cpu-prof', `--cpu-prof-dir=${process.env.BENCH_PROFILE_DIR}`, '--cpu-prof-name=libraries.cpuprofile']
    : [];
  const device = spawn(process.execPath, [...profile, join(ROOT, 'dist', 'main.js')], {
    cwd: ROOT,
    env,
    stdio: ['ignore', log, log],
  });
  children.push(device);
  for (;;) {
    if (device.exitCode !== null) throw new Error(`device exited: ${readFileSync(join(dir, 'device.log'), 'utf8')}`);
    try {
      const libs = await req(url, 'GET', '/libraries');
      if (libs.items[0]?.phase === 'ready') break;
    } catch {
      /* not yet */
    }
    await sleep(100);
  }
  await sleep(2000);
  const rss1 = rssMb(device.pid);
  const cpu1 = await idleCpu(device.pid, IDLE_S);

  const opening = [];
  for (let i = 0; i < N; i++) {
    const t0 = performance.now();
    await req(url, 'POST', '/libraries', { name: `library ${i}` });
    opening.push(performance.now() - t0);
  }
  for (;;) {
    const libs = await req(url, 'GET', '/libraries');
    if (libs.items.every((l) => l.phase === 'ready')) break;
    await sleep(200);
  }
  await sleep(2000);
  global.gc?.();
  const rssN = rssMb(device.pid);
  const cpuN = await idleCpu(device.pid, IDLE_S);
  const conns = await connections(nats, name);

  const perLibrary = (rssN - rss1) / N;
  console.log(`libraries: ${N + 1} open on one device (Postgres), each founded at runtime with POST /libraries`);
  console.log(
    `  open one: p50 ${pct(opening, 50).toFixed(0)} ms, p95 ${pct(opening, 95).toFixed(0)} ms (target p50 <= 1000 ms)`,
  );
  console.log(
    `  memory: RSS ${rss1.toFixed(0)} MB with one library, ${rssN.toFixed(0)} MB with ${N + 1}: ${perLibrary.toFixed(2)} MB per library (target <= 4 MB)`,
  );
  console.log(
    `  idle CPU over ${IDLE_S} s: ${(cpu1 * 100).toFixed(2)}% of a core with one library, ${(cpuN * 100).toFixed(2)}% with ${N + 1} (target <= 5%)`,
  );
  console.log(`  NATS connections of the device: ${conns} (target <= 2)`);
}

async function cleanup() {
  await stopChildren(children); // SIGTERM first: a profiled device writes its CPU profile
  await dbs.dropAll().catch(() => undefined);
  rmSync(dir, { recursive: true, force: true });
}

main()
  .catch((e) => {
    console.error(e);
    process.exitCode = 1;
  })
  .finally(cleanup);
