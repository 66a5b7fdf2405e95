#!/usr/bin/env node
// Latency of peer requests: a device process (dist/main.js) holding BENCH_RPC_ROWS entries answers
// BENCH_RPC_N owned.page requests (a full page of entries, one at a time) and as many watermarks
// requests, from a plain NATS client. With BENCH_RPC_BASELINE=<another checkout, built> the same
// device (same database, same id) is run alternately from that checkout's dist and from this one,
// BENCH_RPC_ROUNDS times each, and the ratio of the medians (this / baseline) is the result.
//   npm run build && node bench/rpc.cjs
//   BENCH_RPC_BASELINE=/tmp/old-checkout node bench/rpc.cjs
//   BENCH_RPC_MAX_PAYLOAD=4194304 ...   (nats-server's max_payload; its default 1 MiB cuts a page of
//                                        entries to about 3,500 rows, 4 MiB leaves the full 4,000)
const { spawn } = require('node:child_process');
const { randomBytes, randomUUID } = require('node:crypto');
const { existsSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } = require('node:fs');
const { tmpdir } = require('node:os');
const { join, resolve } = require('node:path');
const { Client } = require('pg');
const { connect } = require('nats');
const { freePort, portOpen, LOCAL_API_ENV } = require('../scripts/lib/local.cjs');

const ROOT = join(__dirname, '..');
const BASELINE = process.env.BENCH_RPC_BASELINE ? resolve(process.env.BENCH_RPC_BASELINE) : null;
const PG = process.env.BENCH_PG_URL || process.env.TEST_PG_URL || 'postgres://postgres@127.0.0.1:5432/postgres';
const ROWS = Number(process.env.BENCH_RPC_ROWS || 5000);
const N = Number(process.env.BENCH_RPC_N || 200);
const ROUNDS = Number(process.env.BENCH_RPC_ROUNDS || 3);
const dir = mkdtempSync(join(tmpdir(), 'bench-rpc-'));
const children = [];
const dbName = `bench_rpc_${process.pid}`;

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function sql(url, text) {
  const c = new Client({ connectionString: url });
  await c.connect();
  try {
    return await c.query(text);
  } finally {
    await c.end();
  }
}

async function startNats() {
  const port = await freePort();
  const log = openSync(join(dir, 'nats.log'), 'a');
  const args = ['-a', '127.0.0.1', '-p', String(port), '-js', '-sd', join(dir, 'js')];
  if (process.env.BENCH_RPC_MAX_PAYLOAD) {
    writeFileSync(join(dir, 'nats.conf'), `max_payload: ${Number(process.env.BENCH_RPC_MAX_PAYLOAD)}\n`);
    args.push('-c', join(dir, 'nats.conf'));
  }
  const p = spawn('nats-server', args, { stdio: ['ignore', log, log] });
  children.push(p);
  while (!(await portOpen(port))) await sleep(50);
  return `nats://127.0.0.1:${port}`;
}

/** The device from `root`'s dist, until it reports `ready`. */
async function startDevice(root, env) {
  const port = await freePort();
  const log = openSync(join(dir, 'device.log'), 'a');
  const p = spawn(process.execPath, [join(root, 'dist', 'main.js')], {
    cwd: root,
    env: { ...process.env, ...LOCAL_API_ENV, DEVICE_NAME: 'bench-rpc', PORT: String(port), ...env },
    stdio: ['ignore', log, log],
  });
  children.push(p);
  const url = `http://127.0.0.1:${port}`;
  for (;;) {
    if (p.exitCode !== null)
      throw new Error(`device exited: ${readFileSync(join(dir, 'device.log'), 'utf8').slice(-2000)}`);
    try {
      const r = await fetch(`${url}/sync/status`);
      if (r.ok && (await r.json()).phase === 'ready') break;
    } catch {
      /* not yet */
    }
    await sleep(100);
  }
  return { url, proc: p };
}
async function stopDevice(d) {
  const exited = new Promise((r) => d.proc.once('exit', r));
  d.proc.kill('SIGTERM');
  await Promise.race([exited, sleep(10_000)]);
}
async function post(d, path, body) {
  const r = await fetch(`${d.url}${path}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
  if (!r.ok) throw new Error(`POST ${path}: ${r.status} ${(await r.text()).slice(0, 300)}`);
  return r.json();
}

/**
 * A member of the library as a build speaks it: requests sealed and replies opened with the
 * library key when the build seals its traffic (dist has the trust module), plain JSON otherwise.
 */
function memberOf(root, lib, key) {
  const file = join(root, 'dist', 'libs', 'sync', 'src', 'trust', 'library-trust.js');
  if (!existsSync(file)) return null;
  const { LibraryTrust } = require(file);
  const { replyContext } = require(join(root, 'dist', 'libs', 'sync', 'src', 'transport', 'jetstream.transport.js'));
  return { trust: LibraryTrust.inMemory(lib, randomUUID(), key), replyContext };
}

/** Milliseconds of each of n requests, one at a time, after 20 unmeasured ones (sealing included). */
async function timeRequests(nc, member, subject, payload, n, check) {
  const body = Buffer.from(JSON.stringify(payload));
  const ask = async () => {
    const sealed = member ? member.trust.seal(subject, body) : { data: body };
    const m = await nc.request(subject, sealed.data, { timeout: 30_000 });
    const text = member
      ? member.trust.open(member.replyContext(subject, sealed.nonce), m.data).plaintext
      : Buffer.from(m.data);
    const reply = JSON.parse(text.toString('utf8'));
    if (!reply.ok) throw new Error(`${subject}: ${reply.error}`);
    check?.(reply.result, m.data.length);
  };
  for (let i = 0; i < 20; i++) await ask();
  const ms = [];
  for (let i = 0; i < n; i++) {
    const t0 = process.hrtime.bigint();
    await ask();
    ms.push(Number(process.hrtime.bigint() - t0) / 1e6);
  }
  return ms.sort((a, b) => a - b);
}
const median = (xs) => xs[Math.floor(xs.length / 2)];
const p90 = (xs) => xs[Math.floor(xs.length * 0.9)];

async function main() {
  const nats = await startNats();
  await sql(PG, `drop database if exists "${dbName}" with (force)`);
  await sql(PG, `create database "${dbName}"`);
  const u = new URL(PG);
  u.pathname = `/${dbName}`;
  const lib = randomUUID();
  const id = randomUUID();
  const key = randomBytes(32);
  const env = {
    LIBRARY_ID: lib,
    LIBRARY_KEY: key.toString('base64'),
    DEVICE_ID: id,
    DATABASE_URL: u.toString(),
    NATS_URL: nats,
  };

  // the data, written once through the device's API
  let d = await startDevice(ROOT, env);
  const loc = await post(d, '/locations', { name: 'Photos', path: '/photos' });
  for (let off = 0; off < ROWS; off += 5000) {
    const items = [];
    for (let i = off; i < Math.min(ROWS, off + 5000); i++)
      items.push({
        id: randomUUID(),
        locationId: loc.id,
        name: `IMG_${i}.jpg`,
        path: `/photos/2026/IMG_${i}.jpg`,
        kind: 'file',
        sizeBytes: 1000 + i,
        modifiedAt: new Date(1.7e12 + i * 1000).toISOString(),
      });
    await post(d, '/entries/batch', { items });
  }
  await stopDevice(d);

  const nc = await connect({ servers: nats });
  const page = { subject: `sync.${lib}.rpc.${id}.owned.page`, payload: { owner: id, after: null, model: 'entries' } };
  const builds = BASELINE
    ? [
        ['baseline', BASELINE],
        ['this', ROOT],
      ]
    : [['this', ROOT]];
  const results = Object.fromEntries(builds.map(([name]) => [name, { page: [], watermarks: [] }]));
  let shape = '';
  for (let round = 0; round < ROUNDS; round++) {
    for (const [name, root] of builds) {
      d = await startDevice(root, env);
      const member = memberOf(root, lib, key);
      const pageMs = await timeRequests(nc, member, page.subject, page.payload, N, (r, bytes) => {
        shape = `${r.rows[0]?.values.length ?? 0} rows, ${Math.round(bytes / 1024)} KiB`;
      });
      const wmMs = await timeRequests(nc, member, `sync.${lib}.rpc.${id}.watermarks`, {}, N);
      await stopDevice(d);
      results[name].page.push(...pageMs);
      results[name].watermarks.push(...wmMs);
      console.log(
        `round ${round + 1} ${name.padEnd(8)} owned.page median ${median(pageMs).toFixed(2)} ms, p90 ${p90(pageMs).toFixed(2)} ms; watermarks median ${median(wmMs).toFixed(2)} ms`,
      );
    }
  }
  await nc.close();
  console.log(`owned.page: ${shape} per reply, ${N} requests a round, one at a time`);
  for (const [name] of builds) {
    const r = results[name];
    r.page.sort((a, b) => a - b);
    r.watermarks.sort((a, b) => a - b);
    console.log(
      `${name.padEnd(8)} owned.page median ${median(r.page).toFixed(2)} ms, p90 ${p90(r.page).toFixed(2)} ms; watermarks median ${median(r.watermarks).toFixed(2)} ms, p90 ${p90(r.watermarks).toFixed(2)} ms`,
    );
  }
  if (BASELINE) {
    const [b, t] = [results.baseline, results.this];
    console.log(
      `ratio this/baseline: owned.page median ${(median(t.page) / median(b.page)).toFixed(3)}, watermarks median ${(median(t.watermarks) / median(b.watermarks)).toFixed(3)}`,
    );
  }
}

main()
  .catch((e) => {
    console.error(e);
    process.exitCode = 1;
  })
  .finally(async () => {
    for (const p of children) if (p.exitCode === null && p.signalCode === null) p.kill('SIGKILL');
    await sleep(300);
    await sql(PG, `drop database if exists "${dbName}" with (force)`).catch(() => {});
    rmSync(dir, { recursive: true, force: true });
  });
