#!/usr/bin/env node
// Anti-entropy on a large library (issue 10): two device processes on Postgres hold the same
// BENCH_AE_ROWS entries (default 1,000,000, written straight into both databases while the devices
// are down: identical rows that no stream carries). Prints, each beside the same figure with an
// empty library measured in the same run:
//   - idle CPU over BENCH_IDLE_SECONDS (default 60) of each device process and of all of
//     the Postgres backends serving them, in % of one core (target: under 5% of a core per device);
//   - the time for the two devices to confirm agreement after a start;
//   - then 10 rows damaged behind B's back (4 deleted, 6 renamed): the time to repair them and the
//     rows B received to do it (sync_reconcile_rows_received_total).
//   npm run build && node bench/antientropy.cjs
'use strict';

const { spawn } = require('node:child_process');
const { randomBytes, randomUUID } = require('node:crypto');
const { mkdtempSync, openSync, readFileSync, rmSync } = require('node:fs');
const { tmpdir } = require('node:os');
const { join } = require('node:path');
const { Client } = require('pg');
const {
  freePort,
  scratchDatabases,
  startNatsServer,
  stopChildren,
  LOCAL_API_ENV,
} = require('../scripts/lib/local.cjs');

const ROOT = join(__dirname, '..');
const PG = process.env.BENCH_PG_URL || process.env.TEST_PG_URL || 'postgres://postgres@127.0.0.1:5432/postgres';
const ROWS = Number(process.env.BENCH_AE_ROWS || 1_000_000);
const IDLE_S = Number(process.env.BENCH_IDLE_SECONDS || 60);
const dir = mkdtempSync(join(tmpdir(), 'bench-ae-'));
const children = [];
const dbs = scratchDatabases(PG);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const TICKS = 100; // clock ticks per second of /proc/<pid>/stat (Linux's USER_HZ)
const say = (m) => console.log(`[bench-ae] ${m}`);

function cpuSeconds(pid) {
  const f = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
  return (Number(f[11]) + Number(f[12])) / TICKS; // utime + stime
}
/** The pids of the Postgres backends serving the devices' databases (their pools keep them open). */
async function backendPids(names) {
  const c = new Client({ connectionString: PG });
  await c.connect();
  try {
    const r = await c.query('select pid from pg_stat_activity where datname = any($1) and pid <> pg_backend_pid()', [
      names,
    ]);
    return r.rows.map((x) => x.pid);
  } finally {
    await c.end();
  }
}
function cpuOf(pids) {
  let s = 0;
  for (const p of pids) {
    try {
      s += cpuSeconds(p);
    } catch {
      /* gone */
    }
  }
  return s;
}
/** Idle CPU (fraction of one core) of each device process and of Postgres over `seconds`. */
async function idle(devices, seconds) {
  const pids = await backendPids(devices.map((d) => new URL(d.db).pathname.slice(1)));
  const c0 = devices.map((d) => cpuSeconds(d.proc.pid));
  const p0 = cpuOf(pids);
  const t0 = Date.now();
  await sleep(seconds * 1000);
  const s = (Date.now() - t0) / 1000;
  return {
    devices: devices.map((d, i) => (cpuSeconds(d.proc.pid) - c0[i]) / s),
    postgres: (cpuOf(pids) - p0) / s,
    backends: pids.length,
  };
}

async function req(d, method, path, body) {
  const r = await fetch(`${d.url}${path}`, {
    method,
    headers: { 'content-type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
    signal: AbortSignal.timeout(120_000),
  });
  const text = await r.text();
  if (r.status >= 300) throw new Error(`${method} ${path}: ${r.status} ${text}`);
  return text.startsWith('{') || text.startsWith('[') ? JSON.parse(text) : text;
}
async function counter(d, name) {
  const text = await (await fetch(`${d.url}/metrics`)).text();
  let n = 0;
  for (const line of text.split('\n'))
    if (line.startsWith(`${name}{`) || line.startsWith(`${name} `)) n += Number(line.split(' ').pop());
  return n;
}

async function start(d) {
  const log = openSync(join(dir, `${d.name}.log`), 'a');
  d.proc = spawn(process.execPath, [join(ROOT, 'dist', 'main.js')], {
    cwd: ROOT,
    env: { ...process.env, ...LOCAL_API_ENV, ...d.env },
    stdio: ['ignore', log, log],
  });
  children.push(d.proc);
  for (;;) {
    if (d.proc.exitCode !== null) throw new Error(`${d.name} exited: see ${join(dir, `${d.name}.log`)}`);
    try {
      if ((await req(d, 'GET', '/sync/status')).phase === 'ready') return;
    } catch {
      /* not yet */
    }
    await sleep(200);
  }
}
async function stop(d) {
  await new Promise((r) => {
    d.proc.once('exit', r);
    d.proc.kill('SIGTERM');
  });
}

/** Waits until B reports agreement with A confirmed after `since`; returns the ms it took. */
async function agreement(a, b, since) {
  for (;;) {
    const st = await req(b, 'GET', '/sync/status');
    const at = st.peers.find((p) => p.deviceId === a.id)?.agreedAt;
    if (at && Date.parse(at) > since) return Date.now() - since;
    await sleep(250);
  }
}

async function seed(url, owner, location) {
  const c = new Client({ connectionString: url });
  await c.connect();
  try {
    const base = Date.parse('2026-01-01T00:00:00Z');
    await c.query(
      `insert into entries (id, device_id, location_id, name, path, kind, size_bytes, modified_at, version, updated_at)
      select * from (
        select overlay(overlay(md5('ae-seed-' || i) placing '4' from 13) placing '8' from 17)::uuid as id,
          $1::uuid, $2::uuid, 'f' || i || '.jpg', '/big/f' || i, 'file', i, timestamptz '2025-12-01T00:00:00Z',
          lpad(($3::bigint + i / 10000)::text, 15, '0') || '-000000-' || $1,
          to_timestamp(($3::bigint + i / 10000) / 1000.0)
        from generate_series(1, $4::int) i) s
      order by id`,
      [owner, location, base, ROWS],
    );
    await c.query('vacuum analyze entries');
  } finally {
    await c.end();
  }
}

async function main() {
  const natsUrl = (await startNatsServer(dir, children)).url;
  const library = randomUUID();
  const key = randomBytes(32).toString('base64');
  const devices = [];
  for (const name of ['a', 'b']) {
    const d = { name, id: randomUUID(), port: await freePort() };
    d.url = `http://127.0.0.1:${d.port}`;
    d.db = await dbs.create(`bench_ae_${name}_${process.pid}`);
    d.env = {
      DEVICE_ID: d.id,
      DEVICE_NAME: name,
      LIBRARY_ID: library,
      LIBRARY_KEY: key,
      NATS_URL: natsUrl,
      PORT: String(d.port),
      DATABASE_URL: d.db,
    };
    devices.push(d);
  }
  const [a, b] = devices;
  await Promise.all(devices.map(start));
  const loc = randomUUID();
  await req(a, 'POST', '/locations', { id: loc, name: 'big', path: '/big' });
  await sleep(2000);
  const emptyAgreed = await agreement(a, b, Date.now());
  const empty = await idle(devices, IDLE_S);
  say(`empty library: agreement confirmed in ${emptyAgreed} ms; idle over ${IDLE_S} s measured`);

  await Promise.all(devices.map(stop));
  const t0 = Date.now();
  await Promise.all(devices.map((d) => seed(d.db, a.id, loc)));
  say(`${ROWS} entries of A written into both databases in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
  const restarted = Date.now();
  await Promise.all(devices.map(start));
  const bigAgreed = await agreement(a, b, restarted);
  const repairsBefore = await counter(b, 'sync_repairs_total');
  await sleep(5000);
  const big = await idle(devices, IDLE_S);

  const receivedBefore = await counter(b, 'sync_reconcile_rows_received_total');
  const c = new Client({ connectionString: b.db });
  await c.connect();
  const ids = (await c.query('select id from entries where device_id = $1 order by id limit 10', [a.id])).rows.map(
    (r) => r.id,
  );
  const damagedAt = Date.now();
  await c.query('delete from entries where id = any($1::uuid[])', [ids.slice(0, 4)]);
  await c.query("update entries set name = 'damaged' where id = any($1::uuid[])", [ids.slice(4)]);
  for (;;) {
    const r = await c.query("select count(*)::int as n from entries where id = any($1::uuid[]) and name <> 'damaged'", [
      ids,
    ]);
    if (r.rows[0].n === 10) break;
    if (Date.now() - damagedAt > 120_000) throw new Error('10 damaged rows not repaired within 120 s');
    await sleep(100);
  }
  const repairMs = Date.now() - damagedAt;
  await c.end();
  const received = (await counter(b, 'sync_reconcile_rows_received_total')) - receivedBefore;
  const repairs = (await counter(b, 'sync_repairs_total')) - repairsBefore;

  const p = (x) => `${(x * 100).toFixed(2)}%`;
  console.log(`anti-entropy, two devices on Postgres, default heartbeat; ${ROWS} entries vs an empty library`);
  console.log(`  agreement confirmed after a start: ${bigAgreed} ms (empty: ${emptyAgreed} ms)`);
  for (const [i, d] of devices.entries())
    console.log(
      `  idle CPU of device ${d.name} over ${IDLE_S} s: ${p(big.devices[i])} of a core (empty: ${p(empty.devices[i])}; target < 5%)`,
    );
  console.log(
    `  idle CPU of the devices' Postgres backends (${big.backends}): ${p(big.postgres)} (empty: ${p(empty.postgres)})`,
  );
  console.log(
    `  10 rows damaged on B (4 deleted, 6 renamed): repaired in ${repairMs} ms; ${repairs} rows repaired, ${received} rows received (${(received / ROWS).toExponential(1)} of the library)`,
  );
}

async function cleanup() {
  await stopChildren(children);
  await dbs.dropAll().catch(() => undefined);
  rmSync(dir, { recursive: true, force: true });
}

main()
  .catch((e) => {
    console.error(e);
    process.exitCode = 1;
  })
  .finally(cleanup);
