#!/usr/bin/env node
// Sync benchmarks. Every figure is printed next to the raw baseline measured in the same run
// (plain Postgres upsert of entry rows), because these machines are noisy: the ratio is the result.
//   npm run bench                     (all)
//   BENCH_ENTRIES=100000 BENCH_BACKFILL=1000000 npm run bench
//   BENCH_PROFILE_DIR=/tmp/prof npm run bench   (a CPU profile of every device process)
//   BENCH_QUICK=1 npm run bench                 (smaller sizes: about a minute)
//   BENCH_PGLITE=1 npm run bench                (also backfills a device on embedded PGlite)
const { spawn, execFileSync } = require('node:child_process');
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
const QUICK = process.env.BENCH_QUICK === '1';
const SYNC_N = Number(process.env.BENCH_ENTRIES || (QUICK ? 20_000 : 100_000));
const BACKFILL_N = Number(process.env.BENCH_BACKFILL || (QUICK ? 100_000 : 1_000_000));
const BASELINE_N = Number(process.env.BENCH_BASELINE || (QUICK ? 50_000 : 200_000));
const LATENCY_N = Number(process.env.BENCH_LATENCY_SAMPLES || (QUICK ? 20 : 50));
const dir = mkdtempSync(join(tmpdir(), 'bench-'));
const children = [];
const dbs = scratchDatabases(PG);

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const fmt = (n) => Math.round(n).toLocaleString('en-US');

async function withClient(url, fn) {
  const c = new Client({ connectionString: url });
  await c.connect();
  try {
    return await fn(c);
  } finally {
    await c.end();
  }
}
async function count(url) {
  return withClient(url, async (c) => Number((await c.query('select count(*)::int as n from entries')).rows[0].n));
}

function entry(locationId, i) {
  return {
    id: randomUUID(),
    locationId,
    name: `IMG_${i}.jpg`,
    path: `/photos/2026/IMG_${i}.jpg`,
    kind: 'file',
    sizeBytes: 1000 + i,
    modifiedAt: new Date(1.7e12 + i * 1000).toISOString(),
  };
}

/** Plain Postgres: multi-row INSERT … ON CONFLICT DO UPDATE of entry rows, 5,000 per statement. */
async function baseline() {
  const url = await dbs.create(`bench_raw_${process.pid}`);
  return withClient(url, async (c) => {
    await c.query(`create table entries (id uuid primary key, device_id uuid not null, location_id uuid not null, name text not null, path text not null,
      kind text not null, size_bytes bigint not null, modified_at timestamptz not null, version text collate "C" not null, updated_at timestamptz not null)`);
    await c.query('create index on entries (device_id, version, id)');
    await c.query('create index on entries (location_id, id)');
    const dev = randomUUID();
    const loc = randomUUID();
    // the statements are prepared before the clock starts, like the devices' request bodies
    const statements = [];
    for (let off = 0; off < BASELINE_N; off += 5000) {
      const vals = [];
      const params = [];
      for (let i = off; i < Math.min(BASELINE_N, off + 5000); i++) {
        const e = entry(loc, i);
        const b = params.length;
        vals.push(
          `($${b + 1},$${b + 2},$${b + 3},$${b + 4},$${b + 5},$${b + 6},$${b + 7},$${b + 8},$${b + 9},$${b + 10})`,
        );
        params.push(
          e.id,
          dev,
          loc,
          e.name,
          e.path,
          e.kind,
          e.sizeBytes,
          e.modifiedAt,
          `v${String(i).padStart(10, '0')}`,
          new Date().toISOString(),
        );
      }
      statements.push([
        `insert into entries (id, device_id, location_id, name, path, kind, size_bytes, modified_at, version, updated_at) values ${vals.join(',')}
        on conflict (id) do update set name = excluded.name, path = excluded.path, size_bytes = excluded.size_bytes, version = excluded.version, updated_at = excluded.updated_at`,
        params,
      ]);
    }
    const backend = (await c.query('select pg_backend_pid() as pid')).rows[0].pid;
    const cpu0 = cpuSeconds(backend);
    const t0 = process.hrtime.bigint();
    for (const [text, params] of statements) await c.query(text, params);
    const s = Number(process.hrtime.bigint() - t0) / 1e9;
    return { rate: BASELINE_N / s, pgUs: ((cpuSeconds(backend) - cpu0) * 1e6) / BASELINE_N };
  });
}

async function startDevice(name, env) {
  const port = await freePort();
  const log = openSync(join(dir, `${name}.log`), 'a');
  const p = spawn(
    process.execPath,
    [
      ...(process.env.BENCH_PROFILE_DIR
        ? ['--cpu-prof', `--cpu-prof-dir=${process.env.BENCH_PROFILE_DIR}`, `--cpu-prof-name=${name}.cpuprofile`]
        : []),
      join(ROOT, 'dist', 'main.js'),
    ],
    {
      cwd: ROOT,
      env: { ...process.env, ...LOCAL_API_ENV, DEVICE_NAME: name, PORT: String(port), ...env },
      stdio: ['ignore', log, log],
    },
  );
  children.push(p);
  const url = `http://127.0.0.1:${port}`;
  for (;;) {
    if (p.exitCode !== null)
      throw new Error(`${name} exited: ${readFileSync(join(dir, `${name}.log`), 'utf8').slice(-2000)}`);
    try {
      if ((await fetch(`${url}/health`)).ok) break;
    } catch {
      /* not yet */
    }
    await sleep(100);
  }
  return { name, url, proc: p, port };
}
async function req(d, method, path, body) {
  const r = await fetch(`${d.url}${path}`, {
    method,
    headers: { 'content-type': 'application/json' },
    body: body && JSON.stringify(body),
  });
  const j = await r.json();
  if (!r.ok) throw new Error(`${method} ${path}: ${r.status} ${JSON.stringify(j).slice(0, 300)}`);
  return j;
}
/** The request bodies of n entries in a new location of d, in batches of 10,000 (made before timing). */
async function entryBatches(d, n, first = 0) {
  const loc = await req(d, 'POST', '/locations', { name: `Photos ${first}`, path: `/photos/${first}` });
  const bodies = [];
  for (let off = first; off < first + n; off += 10_000) {
    const items = [];
    for (let i = off; i < Math.min(first + n, off + 10_000); i++) items.push(entry(loc.id, i));
    bodies.push(JSON.stringify({ items }));
  }
  return bodies;
}
async function post(d, path, body) {
  const r = await fetch(`${d.url}${path}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body });
  const text = await r.text();
  if (!r.ok) throw new Error(`POST ${path}: ${r.status} ${text.slice(0, 300)}`);
}
async function writeEntries(d, bodies) {
  for (const body of bodies) await post(d, '/entries/batch', body);
}
const pct = (xs, p) => [...xs].sort((x, y) => x - y)[Math.min(xs.length - 1, Math.floor((p / 100) * xs.length))];

/** Milliseconds from a write on A until B serves it: one entry (owned) or one tag (shared). */
async function oneLatency(a, b, loc, kind, i) {
  const id = randomUUID();
  const t0 = performance.now();
  if (kind === 'owned') await req(a, 'POST', '/entries', { ...entry(loc, 1e9 + i), id });
  else await req(a, 'POST', '/tags', { id, name: `latency ${i}`, color: null });
  const written = performance.now() - t0;
  const path = kind === 'owned' ? `/entries/${id}` : `/tags/${id}`;
  for (;;) {
    const r = await fetch(`${b.url}${path}`);
    await r.arrayBuffer();
    if (r.ok) return { total: performance.now() - t0, written };
    if (performance.now() - t0 > 30_000) throw new Error(`${kind} write ${id} not on B after 30 s`);
    await sleep(1);
  }
}

/**
 * Latency of single writes, owned and shared alternating: idle (each write alone, 300 ms apart)
 * or under load (1,000 entry writes/s on A meanwhile, in batches of 20 every 20 ms).
 */
async function latency(a, b, load) {
  const loc = (await req(a, 'POST', '/locations', { name: 'latency', path: '/latency' })).id;
  let writing = load;
  let loaded = 0;
  const writer = (async () => {
    let i = 0;
    while (writing) {
      const t = performance.now();
      const items = Array.from({ length: 20 }, () => entry(loc, 2e9 + i++));
      await post(a, '/entries/batch', JSON.stringify({ items }));
      loaded += 20;
      await sleep(Math.max(0, 20 - (performance.now() - t)));
    }
  })();
  const started = performance.now();
  const out = { owned: [], shared: [] };
  const writes = [];
  for (let i = 0; i < 2 * LATENCY_N; i++) {
    const kind = i % 2 ? 'shared' : 'owned';
    const { total, written } = await oneLatency(a, b, loc, kind, i);
    out[kind].push(total);
    writes.push(written);
    await sleep(load ? 50 : 300);
  }
  writing = false;
  await writer;
  const rate = loaded / ((performance.now() - started) / 1000);
  const all = [...out.owned, ...out.shared];
  const f = (xs) => `p50 ${pct(xs, 50).toFixed(1)} ms, p99 ${pct(xs, 99).toFixed(1)} ms`;
  return `${f(all)} (owned ${f(out.owned)}; shared ${f(out.shared)}; of which the write on A answered in p50 ${pct(writes, 50).toFixed(1)} ms)${load ? `; load ${fmt(rate)} entry writes/s` : ''}`;
}

/** CPU seconds used so far by a process (user + system), from /proc. */
function cpuSeconds(pid) {
  try {
    const f = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
    return (Number(f[11]) + Number(f[12])) / 100;
  } catch {
    return null;
  }
}

/**
 * CPU used by labelled processes over a phase: each device's node process, the Postgres backends
 * of its database (sampled every 200 ms, since a pool opens and closes them) and the nats-server.
 * stop() returns label -> CPU seconds.
 */
function cpuMeter(devices, natsPid) {
  const seen = new Map(); // pid -> { label, first, last }
  const note = (pid, label) => {
    const s = cpuSeconds(pid);
    if (s === null) return;
    const held = seen.get(pid);
    if (held) held.last = s;
    else seen.set(pid, { label, first: s, last: s });
  };
  const sample = async () => {
    for (const d of devices) note(d.proc.pid, `${d.name} node`);
    if (natsPid) note(natsPid, 'nats-server');
    const rows = await withClient(
      PG,
      async (c) => (await c.query('select pid, datname from pg_stat_activity where datname is not null')).rows,
    );
    for (const r of rows) for (const d of devices) if (r.datname === d.db) note(r.pid, `${d.name} postgres`);
  };
  let running = true;
  const loop = (async () => {
    while (running) {
      await sample().catch(() => {});
      await sleep(200);
    }
  })();
  const ready = sample();
  return {
    ready,
    async stop() {
      running = false;
      await loop;
      await sample().catch(() => {});
      const used = {};
      for (const { label, first, last } of seen.values()) used[label] = (used[label] ?? 0) + last - first;
      return used;
    },
  };
}

/** CPU µs per row of each process, Postgres ones with their ratio to the baseline's backend. */
function cpuPerRow(used, rows, rawPgUs) {
  return Object.entries(used)
    .sort(([a], [b]) => a.localeCompare(b))
    .map(([label, s]) => {
      const us = (s * 1e6) / rows;
      return `${label} ${us.toFixed(1)} µs${label.endsWith('postgres') ? ` (${(us / rawPgUs).toFixed(2)}× baseline)` : ''}`;
    })
    .join(', ');
}
function peakRssMb(pid) {
  try {
    const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) / 1024 : NaN;
  } catch {
    return NaN;
  }
}

async function main() {
  try {
    execFileSync('nats-server', ['--version'], { stdio: 'ignore' });
  } catch {
    throw new Error('nats-server is not installed');
  }
  const { rate: raw, pgUs: rawPgUs } = await baseline();
  console.log(
    `baseline: plain Postgres upsert of entry rows: ${fmt(raw)} rows/s (${fmt(BASELINE_N)} rows), Postgres CPU ${rawPgUs.toFixed(1)} µs per row`,
  );
  const nats = (await startNatsServer(dir, children)).url;
  const natsPid = children[children.length - 1].pid;

  // 1. live sync: entries written on A become readable on B
  const lib = randomUUID();
  const key = randomBytes(32).toString('base64');
  const a = await startDevice('bench-a', {
    LIBRARY_ID: lib,
    LIBRARY_KEY: key,
    DATABASE_URL: await dbs.create(`bench_a_${process.pid}`),
    NATS_URL: nats,
  });
  const bUrl = await dbs.create(`bench_b_${process.pid}`);
  const b = await startDevice('bench-b', { LIBRARY_ID: lib, LIBRARY_KEY: key, DATABASE_URL: bUrl, NATS_URL: nats });
  while ((await req(b, 'GET', '/sync/status')).phase !== 'ready') await sleep(100);

  const bodies = await entryBatches(a, SYNC_N);
  const pair = [
    { ...a, db: `bench_a_${process.pid}` },
    { ...b, db: `bench_b_${process.pid}` },
  ];
  const liveCpu = cpuMeter(pair, natsPid);
  await liveCpu.ready;
  const t0 = Date.now();
  await writeEntries(a, bodies);
  const written = Date.now();
  const heldWhenWritten = await count(bUrl);
  while ((await count(bUrl)) < SYNC_N) await sleep(50);
  const syncS = (Date.now() - t0) / 1000;
  const syncRate = SYNC_N / syncS;
  const liveUsed = await liveCpu.stop();
  console.log(
    `sync: ${fmt(SYNC_N)} entries written on A (POST /entries/batch, 10k per request) readable on B in ${syncS.toFixed(2)} s: ${fmt(syncRate)} rows/s; ratio to baseline ${(syncRate / raw).toFixed(2)}`,
  );
  console.log(
    `  A's writes took ${((written - t0) / 1000).toFixed(2)} s (${fmt(SYNC_N / ((written - t0) / 1000))} rows/s); B held ${fmt(heldWhenWritten)} when the last returned`,
  );
  console.log(`  CPU per row: ${cpuPerRow(liveUsed, SYNC_N, rawPgUs)}`);

  let peer = b; // the device the latency is read on

  // 2. backfill: a new device joins a library holding BACKFILL_N entries while A and B stay online
  if (BACKFILL_N > 0) {
    const more = BACKFILL_N - SYNC_N;
    for (let off = 0; off < more; off += 100_000)
      await writeEntries(a, await entryBatches(a, Math.min(100_000, more - off), SYNC_N + off));
    while ((await count(bUrl)) < BACKFILL_N) await sleep(200);
    const cUrl = await dbs.create(`bench_c_${process.pid}`);
    const c = { name: 'bench-c', db: `bench_c_${process.pid}` };
    const backfillCpu = cpuMeter(pair, natsPid);
    await backfillCpu.ready;
    const t1 = Date.now();
    Object.assign(
      c,
      await startDevice('bench-c', { LIBRARY_ID: lib, LIBRARY_KEY: key, DATABASE_URL: cUrl, NATS_URL: nats }),
    );
    const cMeter = cpuMeter([c], null);
    await cMeter.ready;
    peer = c;
    let peak = 0;
    for (;;) {
      peak = Math.max(peak, peakRssMb(c.proc.pid));
      const st = await req(c, 'GET', '/sync/status');
      if (st.phase === 'ready' && (await count(cUrl)) >= BACKFILL_N) break;
      await sleep(200);
    }
    const s = (Date.now() - t1) / 1000;
    peak = Math.max(peak, peakRssMb(c.proc.pid));
    const used = { ...(await backfillCpu.stop()), ...(await cMeter.stop()) };
    used['bench-c node'] = cpuSeconds(c.proc.pid); // from its start, boot included
    const rate = BACKFILL_N / s;
    console.log(
      `backfill: ${fmt(BACKFILL_N)} entries into a new device C, A and B online, in ${s.toFixed(1)} s (process start to ready): ${fmt(rate)} rows/s; ratio to baseline ${(rate / raw).toFixed(2)}; peak RSS of C ${peak.toFixed(0)} MB`,
    );
    // where the time went, from the joining device's own log
    const log = readFileSync(join(dir, 'bench-c.log'), 'utf8');
    // eslint-disable-next-line no-control-regex -- the log's colour codes
    const plain = log.replace(/\x1b\[[0-9;]*m/g, '');
    const pulled = /backfill from \S+ finished: (\d+) rows in (\d+) ms/.exec(plain);
    if (pulled)
      console.log(
        `  of which pulling pages: ${(Number(pulled[2]) / 1000).toFixed(1)} s for ${fmt(Number(pulled[1]))} rows`,
      );
    console.log(`  CPU per row: ${cpuPerRow(used, BACKFILL_N, rawPgUs)}`);

    // the same into a device on embedded PGlite (BENCH_PGLITE=1), stopped afterwards
    if (process.env.BENCH_PGLITE === '1') {
      const dataDir = mkdtempSync(join(tmpdir(), 'bench-pglite-'));
      const t2 = Date.now();
      const d = await startDevice('bench-d', {
        LIBRARY_ID: lib,
        LIBRARY_KEY: key,
        DATABASE_URL: '',
        DATA_DIR: dataDir,
        NATS_URL: nats,
      });
      let peakD = 0;
      for (;;) {
        peakD = Math.max(peakD, peakRssMb(d.proc.pid));
        const st = await req(d, 'GET', '/sync/status');
        if (st.phase === 'ready' && (await req(d, 'GET', '/sync/digest')).models.entries.count >= BACKFILL_N) break;
        await sleep(500);
      }
      const s2 = (Date.now() - t2) / 1000;
      peakD = Math.max(peakD, peakRssMb(d.proc.pid));
      console.log(
        `backfill into PGlite: ${fmt(BACKFILL_N)} entries into a new device D on embedded PGlite, A, B and C online, in ${s2.toFixed(1)} s: ${fmt(BACKFILL_N / s2)} rows/s; ratio to baseline ${(BACKFILL_N / s2 / raw).toFixed(2)}; peak RSS of D ${peakD.toFixed(0)} MB (its database included: PGlite runs in the process)`,
      );
      await stopChildren([d.proc]);
      rmSync(dataDir, { recursive: true, force: true });
    }
  }

  // 3. latency: one change written on A until the other device serves it (last: its writes would
  // otherwise count in the phases above)
  const other = peer.name.slice(-1).toUpperCase();
  console.log(
    `latency A -> ${other}, idle (${LATENCY_N} owned and ${LATENCY_N} shared writes): ${await latency(a, peer, false)}`,
  );
  console.log(`latency A -> ${other}, under load: ${await latency(a, peer, true)}`);
}

main()
  .catch((e) => {
    console.error(e);
    process.exitCode = 1;
  })
  .finally(async () => {
    await stopChildren(children); // a graceful stop first: a profiled device writes its profile on exit
    await sleep(300);
    await dbs.dropAll();
    rmSync(dir, { recursive: true, force: true });
  });
