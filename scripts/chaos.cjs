#!/usr/bin/env node
// A library tried the way a demanding user would (`npm run chaos`): device processes started as
// docs/http.md says, random writes through the HTTP API on every device, in rounds. Each round has
// one fault at a random moment during its writes: a device killed (SIGKILL) and restarted, a device
// frozen (SIGSTOP) and resumed, the nats-server killed and restarted, the broker's storage wiped,
// or a new device joining. After each round's writes every device must report the same
// /sync/digest; at the end every write an API acknowledged must be on every device (unless
// acknowledged deleted) and nothing deleted may come back.
//
// Needs Postgres (CHAOS_PG_URL, default postgres://postgres@127.0.0.1:5432/postgres) and
// `nats-server` on PATH. The seed (CHAOS_SEED, default random) decides everything but timing: the
// number of devices (3-6, or CHAOS_DEVICES), which run on embedded PGlite (about a third; the first
// is always Postgres), the fault of each round (from CHAOS_FAULTS, default kill,stop,nats,wipe,join),
// its victim and moment, and every write. CHAOS_ROUNDS (default 6) rounds share CHAOS_SECONDS of
// writes (default 60); CHAOS_CONVERGE_SECONDS (default 180) bounds each round's convergence.
// CHAOS_RUNS=N runs N times in a row (seeds CHAOS_SEED, +1, +2, ...) and prints a table of every
// run's seed, devices, faults, convergence times and anti-entropy repairs, and the seeds that
// failed. Repairs mean a difference that no stream or watermark showed was found by anti-entropy:
// the run converged, but something upstream went wrong (its device logs name the rows).
// Exit code 0: converged and nothing lost (every run); 1 otherwise. Logs and databases stay on
// failure (and with CHAOS_STRICT=1, when anything was repaired).
'use strict';

const { spawn } = require('node:child_process');
const { randomBytes } = require('node:crypto');
const { mkdtempSync, openSync, readFileSync, rmSync } = require('node:fs');
const { tmpdir } = require('node:os');
const { join } = require('node:path');
const { freePort, portOpen, scratchDatabases, LOCAL_API_ENV } = require('./lib/local.cjs');

const ROOT = join(__dirname, '..');
const RUNS = Number(process.env.CHAOS_RUNS || 1);
const SEED = Number(process.env.CHAOS_SEED || Math.floor(Math.random() * 2 ** 31));

/** mulberry32: a small seeded generator, so that a run's random choices can be replayed. */
function seeded(seed) {
  let t = seed >>> 0;
  return () => {
    t = (t + 0x6d2b79f5) >>> 0;
    let r = Math.imul(t ^ (t >>> 15), 1 | t);
    r = (r + Math.imul(r ^ (r >>> 7), 61 | r)) ^ r;
    return ((r ^ (r >>> 14)) >>> 0) / 4294967296;
  };
}
const random = seeded(SEED);
/**
 * The scenario's own stream (devices, faults, victims, moments): the writers draw from `random`
 * concurrently, in an order that depends on timing, so sharing one stream would make a replayed
 * seed pick other victims.
 */
const scenario = seeded((SEED ^ 0x5bd1e995) >>> 0);
/** A uuid from the seeded generator (ids of the run's writes). */
function seededUuid(gen = random) {
  const b = Buffer.from(Array.from({ length: 16 }, () => Math.floor(gen() * 256)));
  b[6] = (b[6] & 0x0f) | 0x40;
  b[8] = (b[8] & 0x3f) | 0x80;
  const h = b.toString('hex');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}
const PG = process.env.CHAOS_PG_URL || 'postgres://postgres@127.0.0.1:5432/postgres';
const SECONDS = Number(process.env.CHAOS_SECONDS || 60);
const dir = mkdtempSync(join(tmpdir(), 'chaos-'));
const library = seededUuid();
const libraryKey = randomBytes(32).toString('base64');
const dbs = scratchDatabases(PG);
let keep = false; // on failure the databases stay for inspection
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const say = (m) => console.log(`[chaos ${((Date.now() - T0) / 1000).toFixed(1).padStart(5)}s] ${m}`);
const T0 = Date.now();
const pick = (xs) => xs[Math.floor(random() * xs.length)];
const spick = (xs) => xs[Math.floor(scenario() * xs.length)];

// --- the broker --------------------------------------------------------------------------------
const nats = { port: 0, proc: null, store: join(dir, 'js') };
async function natsStart() {
  nats.port ||= await freePort();
  const log = openSync(join(dir, 'nats.log'), 'a');
  nats.proc = spawn('nats-server', ['-a', '127.0.0.1', '-p', String(nats.port), '-js', '-sd', nats.store], {
    stdio: ['ignore', log, log],
  });
  while (!(await portOpen(nats.port))) await sleep(50);
}
async function natsKill() {
  const p = nats.proc;
  nats.proc = null;
  await new Promise((r) => {
    p.once('exit', r);
    p.kill('SIGKILL');
  });
}

// --- devices -----------------------------------------------------------------------------------
const devices = [];
async function device(name, embedded) {
  const d = {
    name,
    port: await freePort(),
    id: seededUuid(scenario),
    env: {},
    proc: null,
    up: false,
    store: embedded ? 'PGlite' : 'Postgres',
  };
  d.env = {
    DEVICE_ID: d.id,
    DEVICE_NAME: name,
    LIBRARY_ID: library,
    LIBRARY_KEY: libraryKey,
    NATS_URL: `nats://127.0.0.1:${nats.port}`,
    PORT: String(d.port),
    SYNC_HEARTBEAT_INTERVAL_MS: '1000',
    ...(embedded ? { DATA_DIR: join(dir, name) } : { DATABASE_URL: await dbs.create(`chaos_${name}_${process.pid}`) }),
  };
  d.url = `http://127.0.0.1:${d.port}`;
  devices.push(d);
  await start(d);
  return d;
}
async function start(d) {
  const log = openSync(join(dir, `${d.name}.log`), 'a');
  const env = { ...process.env, ...LOCAL_API_ENV, ...d.env };
  delete env.DATABASE_URL; // only what this device's env says
  if (d.env.DATABASE_URL) env.DATABASE_URL = d.env.DATABASE_URL;
  d.proc = spawn(process.execPath, [join(ROOT, 'dist', 'main.js')], { cwd: ROOT, env, stdio: ['ignore', log, log] });
  for (let i = 0; ; i++) {
    if (d.proc.exitCode !== null) throw new Error(`${d.name} exited with ${d.proc.exitCode}; see ${dir}/${d.name}.log`);
    try {
      if ((await fetch(`${d.url}/health`)).ok) break;
    } catch {
      /* not yet */
    }
    await sleep(100);
  }
  d.up = true;
}
async function kill(d, signal = 'SIGKILL') {
  d.up = false;
  const p = d.proc;
  await new Promise((r) => {
    p.once('exit', r);
    p.kill(signal);
  });
}

async function api(d, method, path, body) {
  const r = await fetch(`${d.url}${path}`, {
    method,
    headers: { 'content-type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
    signal: AbortSignal.timeout(15_000),
  });
  const text = await r.text();
  return { status: r.status, body: text ? JSON.parse(text) : null };
}

// --- what the API acknowledged ------------------------------------------------------------------
/** entry id -> { owner, location } for entries whose create was acknowledged and delete was not. */
const entries = new Map();
/** ids whose fate is unknown (a request that failed without an answer). */
const uncertain = new Set();
const locations = new Map(); // device name -> [location ids]
const tags = new Set();
const stats = { ok: 0, refused: 0, unanswered: 0 };

async function step(d) {
  const mine = locations.get(d.name) ?? [];
  const roll = random();
  const myEntries = () => [...entries].filter(([, e]) => e.owner === d.name).map(([id]) => id);
  let req;
  if (mine.length === 0 || roll < 0.05) {
    const id = seededUuid();
    req = [
      'POST',
      '/locations',
      { id, name: `loc-${id.slice(0, 6)}`, path: `/data/${id.slice(0, 6)}` },
      () => locations.set(d.name, [...mine, id]),
      [id],
    ];
  } else if (roll < 0.45) {
    const loc = pick(mine);
    const items = Array.from({ length: 1 + Math.floor(random() * 300) }, (_, i) => ({
      id: seededUuid(),
      locationId: loc,
      name: `f${i}.jpg`,
      path: `/x/f${i}.jpg`,
      kind: 'file',
      sizeBytes: i,
      modifiedAt: new Date().toISOString(),
    }));
    req = [
      'POST',
      '/entries/batch',
      { items },
      () => items.forEach((it) => entries.set(it.id, { owner: d.name, location: loc })),
      items.map((i) => i.id),
    ];
  } else if (roll < 0.55 && myEntries().length) {
    const id = pick(myEntries());
    req = [
      'PATCH',
      `/entries/${id}`,
      { name: `renamed-${random().toString(36).slice(2, 7)}.jpg` },
      () => undefined,
      [],
    ];
  } else if (roll < 0.62 && myEntries().length) {
    const id = pick(myEntries());
    req = ['DELETE', `/entries/${id}`, undefined, () => entries.delete(id), [id]];
  } else if (roll < 0.64 && mine.length > 1) {
    const loc = pick(mine);
    req = [
      'DELETE',
      `/locations/${loc}`,
      undefined,
      () => {
        locations.set(
          d.name,
          mine.filter((l) => l !== loc),
        );
        for (const [id, e] of entries) if (e.location === loc) entries.delete(id);
      },
      [loc, ...[...entries].filter(([, e]) => e.location === loc).map(([id]) => id)],
    ];
  } else if (roll < 0.72) {
    const id = seededUuid();
    req = [
      'POST',
      '/tags',
      { id, name: `tag-${id.slice(0, 4)}`, color: pick(['red', 'blue', null]) },
      () => tags.add(id),
      [],
    ];
  } else if (roll < 0.78 && tags.size) {
    req = ['PATCH', `/tags/${pick([...tags])}`, { color: pick(['green', 'yellow', null]) }, () => undefined, []];
  } else if (roll < 0.8 && tags.size) {
    const t = pick([...tags]);
    req = ['DELETE', `/tags/${t}`, undefined, () => tags.delete(t), []];
  } else if (roll < 0.9 && entries.size) {
    req = [
      'PUT',
      `/entries/${pick([...entries.keys()])}/metadata`,
      { favorite: random() < 0.5, notes: `n${Math.floor(random() * 100)}` },
      () => undefined,
      [],
    ];
  } else if (tags.size && entries.size) {
    const t = pick([...tags]);
    const e = pick([...entries.keys()]);
    req = [random() < 0.7 ? 'PUT' : 'DELETE', `/tags/${t}/entries/${e}`, undefined, () => undefined, []];
  } else return;
  const [method, path, body, onOk, ids] = req;
  try {
    const r = await api(d, method, path, body);
    if (r.status >= 200 && r.status < 300) {
      stats.ok++;
      onOk();
    } else stats.refused++;
  } catch {
    stats.unanswered++; // the device may or may not have committed it
    for (const id of ids) uncertain.add(id);
  }
}

async function writer(d, until) {
  while (Date.now() < until) {
    if (!d.up) {
      await sleep(100);
      continue;
    }
    await step(d);
  }
}

// --- convergence --------------------------------------------------------------------------------
async function digests() {
  return Promise.all(devices.map(async (d) => JSON.stringify((await api(d, 'GET', '/sync/digest')).body.models)));
}
async function allEntryIds(d) {
  const ids = new Set();
  let after = null;
  for (;;) {
    const r = await api(d, 'GET', `/entries?limit=1000${after ? `&cursor=${after}` : ''}`);
    for (const e of r.body.items) ids.add(e.id);
    after = r.body.nextCursor;
    if (!after || r.body.items.length === 0) break;
  }
  return ids;
}

/** Every device's sync_repairs_total (anti-entropy repairs since it started), summed over models. */
async function repairs(d) {
  try {
    const text = await (await fetch(`${d.url}/metrics`, { signal: AbortSignal.timeout(5000) })).text();
    let n = 0;
    for (const m of text.matchAll(/^sync_repairs_total\{[^}]*\} (\d+)/gm)) n += Number(m[1]);
    return n;
  } catch {
    return 0; // down: counted at the next look
  }
}

/** Every repair the devices logged in the whole run (restarts included): model -> rows, and the lines. */
function repairsLogged() {
  const byModel = {};
  const lines = [];
  for (const d of devices) {
    let text = '';
    try {
      text = readFileSync(join(dir, `${d.name}.log`), 'utf8');
    } catch {
      continue;
    }
    // eslint-disable-next-line no-control-regex
    for (const line of text.replace(/\x1b\[[0-9;]*m/g, '').split('\n')) {
      const m = /repaired (\d+) (\w+) rows/.exec(line);
      if (!m) continue;
      byModel[m[2]] = (byModel[m[2]] ?? 0) + Number(m[1]);
      lines.push(`${d.name}: ${line.slice(line.indexOf('repaired'))}`);
    }
  }
  return { byModel, lines };
}

/** Waits until every device reports the same digest; returns seconds taken, or null after the deadline. */
async function converge(label, since) {
  const deadline = Date.now() + CONVERGE_MS;
  let last = [];
  let waits = 0;
  for (;;) {
    last = await digests().catch(() => []);
    if (last.length === devices.length && last.every((x) => x === last[0])) return (Date.now() - since) / 1000;
    if (++waits % 10 === 0) {
      const views = await Promise.all(
        devices.map(async (d) => {
          const s = (await api(d, 'GET', '/sync/status').catch(() => ({ body: {} }))).body;
          const m = (await api(d, 'GET', '/sync/digest').catch(() => ({ body: { models: {} } }))).body.models;
          return `${d.name} ${s.phase} entries=${m?.entries?.count} tags=${m?.tags?.count}`;
        }),
      );
      say(`${label}: waiting: ${views.join(' | ')}`);
    }
    if (Date.now() > deadline) {
      say(`${label}: NOT CONVERGED after ${CONVERGE_MS / 1000} s:`);
      devices.forEach((d, i) => console.log(`  ${d.name}: ${last[i]}`));
      await whoHoldsWhat();
      return null;
    }
    await sleep(500);
  }
}

/** Who holds what, by owner, and every device's watermarks: the first thing to look at. */
async function whoHoldsWhat() {
  for (const d of devices) {
    const byOwner = {};
    for (const model of ['locations', 'entries']) {
      let cursor = null;
      do {
        const r = await api(d, 'GET', `/${model}?limit=1000${cursor ? `&cursor=${cursor}` : ''}`);
        for (const x of r.body.items) {
          const owner = devices.find((o) => o.id === x.deviceId)?.name ?? x.deviceId;
          byOwner[`${model}:${owner}`] = (byOwner[`${model}:${owner}`] ?? 0) + 1;
        }
        cursor = r.body.nextCursor;
      } while (cursor);
    }
    const st = (await api(d, 'GET', '/sync/status')).body;
    console.log(
      `  ${d.name} holds ${JSON.stringify(byOwner)}; watermarks ${JSON.stringify(st.peers.map((p) => [devices.find((o) => o.id === p.deviceId)?.name, p.stateWatermark?.slice(0, 22)]))}`,
    );
  }
}

/** Every acknowledged entry on every device, and nothing deleted or never written; returns the problems. */
async function checkEntries() {
  let bad = 0;
  for (const d of devices) {
    const held = await allEntryIds(d);
    const missing = [...entries.keys()].filter((id) => !held.has(id) && !uncertain.has(id));
    const extra = [...held].filter((id) => !entries.has(id) && !uncertain.has(id));
    if (missing.length || extra.length) {
      bad++;
      say(
        `${d.name}: ${missing.length} acknowledged entries missing (${missing.slice(0, 3).join(', ')}), ${extra.length} that should not exist (${extra.slice(0, 3).join(', ')})`,
      );
    }
  }
  return bad;
}

// --- faults --------------------------------------------------------------------------------------
const FAULTS = (process.env.CHAOS_FAULTS || 'kill,stop,nats,wipe,join').split(',').map((f) => f.trim());
const between = (lo, hi) => lo + scenario() * (hi - lo);
/** One fault, at `at` seconds into a round of `len` seconds; returns its description. */
async function fault(kind, round, writers, len) {
  const up = devices.filter((d) => d.up);
  const victim = spick(up);
  switch (kind) {
    case 'kill': {
      const down = between(1, 3);
      say(`round ${round}: SIGKILL ${victim.name} (${victim.store}); restarts after ${down.toFixed(1)} s`);
      await kill(victim);
      await sleep(down * 1000);
      await start(victim);
      say(`round ${round}: ${victim.name} restarted`);
      return `kill ${victim.name}`;
    }
    case 'stop': {
      const frozen = between(4, Math.max(5, len));
      say(`round ${round}: SIGSTOP ${victim.name} for ${frozen.toFixed(1)} s (connections open)`);
      victim.up = false;
      victim.proc.kill('SIGSTOP');
      await sleep(frozen * 1000);
      victim.proc.kill('SIGCONT');
      victim.up = true;
      say(`round ${round}: SIGCONT ${victim.name}`);
      return `stop ${victim.name} ${frozen.toFixed(0)}s`;
    }
    case 'nats': {
      const down = between(1, 4);
      say(`round ${round}: nats-server killed for ${down.toFixed(1)} s`);
      await natsKill();
      await sleep(down * 1000);
      await natsStart();
      return 'broker restart';
    }
    case 'wipe': {
      say(`round ${round}: nats-server killed and its storage wiped`);
      await natsKill();
      rmSync(nats.store, { recursive: true, force: true });
      await sleep(between(1, 3) * 1000);
      await natsStart();
      return 'broker wiped';
    }
    case 'join': {
      const name = String.fromCharCode(97 + devices.length);
      const embedded = scenario() < PGLITE_SHARE;
      say(`round ${round}: ${name} joins (new, empty, ${embedded ? 'PGlite' : 'Postgres'})`);
      const d = await device(name, embedded);
      writers.push(writer(d, writersUntil));
      return `join ${name}`;
    }
  }
  throw new Error(`unknown fault ${kind}`);
}

const ROUNDS = Number(process.env.CHAOS_ROUNDS || 6);
const CONVERGE_MS = Number(process.env.CHAOS_CONVERGE_SECONDS || 180) * 1000;
const PGLITE_SHARE = 1 / 3;
let writersUntil = 0;

async function main() {
  // the scenario, all from the seed: how many devices, which on PGlite, which faults in which round
  const total = Number(process.env.CHAOS_DEVICES || 3 + Math.floor(scenario() * 4));
  const plan = Array.from({ length: ROUNDS }, () => spick(FAULTS));
  let joins = plan.filter((f) => f === 'join').length;
  const initial = Math.max(2, total - joins);
  // at most `total` devices in the end: surplus joins become kills
  joins = Math.max(0, total - initial);
  for (let i = 0, j = 0; i < plan.length; i++) if (plan[i] === 'join' && ++j > joins) plan[i] = 'kill';
  await natsStart();
  for (let i = 0; i < initial; i++) await device(String.fromCharCode(97 + i), i > 0 && scenario() < PGLITE_SHARE);
  say(
    `library ${library}: ${initial} devices (${devices.map((d) => `${d.name} ${d.store}`).join(', ')}), ${total} in the end; faults ${plan.join(', ')}; logs in ${dir}`,
  );
  const len = SECONDS / ROUNDS;
  const rounds = [];
  let failed = false;
  for (let r = 1; r <= ROUNDS; r++) {
    const kind = plan[r - 1];
    writersUntil = Date.now() + len * 1000;
    const writers = devices.map((d) => writer(d, writersUntil));
    await sleep(between(0.5, len / 2) * 1000);
    const what = await fault(kind, r, writers, len);
    await Promise.all(writers); // a fault may outlast the round's writes
    const before = (await Promise.all(devices.map(repairs))).reduce((a, b) => a + b, 0);
    const writesDone = Date.now();
    const took = await converge(`round ${r}`, writesDone);
    const repaired = (await Promise.all(devices.map(repairs))).reduce((a, b) => a + b, 0);
    rounds.push({ round: r, fault: what, converged: took, repaired });
    if (took === null) {
      failed = true;
      break;
    }
    say(
      `round ${r} (${what}): converged ${took.toFixed(1)} s after the writes; anti-entropy repairs so far ${repaired} (${repaired - before} while converging)`,
    );
  }
  say(
    `writes done: ${stats.ok} acknowledged, ${stats.refused} refused (4xx), ${stats.unanswered} unanswered; ${entries.size} entries should exist`,
  );
  const logged = repairsLogged();
  const repairedTotal = Object.values(logged.byModel).reduce((a, b) => a + b, 0);
  if (repairedTotal) {
    say(`anti-entropy repaired ${repairedTotal} rows; what it found:`);
    for (const line of logged.lines.slice(0, 20)) console.log(`  ${line}`);
  }
  const summary = {
    repairedModels: Object.entries(logged.byModel)
      .map(([m, n]) => `${m} ${n}`)
      .join(', '),
    devices: devices.map((d) => `${d.name}:${d.store}`).join(' '),
    faults: rounds.map((r) => r.fault).join(', '),
    convergence: rounds.map((r) => (r.converged === null ? 'never' : `${r.converged.toFixed(1)}`)).join('/'),
    repaired: repairedTotal,
  };
  console.log(`CHAOS-SUMMARY ${JSON.stringify(summary)}`);
  if (failed) {
    keep = true;
    process.exitCode = 1;
    return;
  }
  if (repairedTotal && process.env.CHAOS_STRICT === '1') keep = true;
  const bad = await checkEntries();
  if (bad) {
    keep = true;
    process.exitCode = 1;
    return;
  }
  say(
    `converged after every round: ${devices.length} devices report the same digest; every acknowledged entry is on every device (${entries.size}), nothing deleted came back`,
  );
}

/** CHAOS_RUNS > 1: one child run per seed, in a row, and a summary of them all. */
async function runMany() {
  const results = [];
  for (let i = 0; i < RUNS; i++) {
    const seed = SEED + i;
    const started = Date.now();
    const child = spawn(process.execPath, [__filename], {
      env: { ...process.env, CHAOS_SEED: String(seed), CHAOS_RUNS: '1' },
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    let out = '';
    child.stdout.on('data', (b) => {
      out += b;
      process.stdout.write(b);
    });
    const code = await new Promise((r) => child.once('exit', (c) => r(c ?? 1)));
    const summary = JSON.parse(/CHAOS-SUMMARY (.*)/.exec(out)?.[1] ?? 'null');
    results.push({ seed, ok: code === 0, summary, seconds: ((Date.now() - started) / 1000).toFixed(0) });
    console.log(`[chaos] run ${i + 1}/${RUNS} seed ${seed}: ${code === 0 ? 'ok' : 'FAILED'}`);
  }
  console.log(
    '\n| seed | result | devices | faults (one per round) | converged after each round (s) | repaired rows | run (s) |',
  );
  console.log('| --- | --- | --- | --- | --- | --- | --- |');
  for (const r of results) {
    const s = r.summary ?? {};
    console.log(
      `| ${r.seed} | ${r.ok ? 'ok' : 'FAILED'} | ${s.devices ?? '-'} | ${s.faults ?? '-'} | ${s.convergence ?? '-'} | ${s.repaired ?? '-'}${s.repairedModels ? ` (${s.repairedModels})` : ''} | ${r.seconds} |`,
    );
  }
  const failed = results.filter((r) => !r.ok).map((r) => r.seed);
  const repaired = results.filter((r) => r.summary?.repaired).map((r) => r.seed);
  if (repaired.length) console.log(`seeds whose convergence needed anti-entropy repairs: ${repaired.join(' ')}`);
  console.log(failed.length ? `failed seeds: ${failed.join(' ')}` : `all ${RUNS} runs converged with nothing lost`);
  process.exitCode = failed.length ? 1 : 0;
  rmSync(dir, { recursive: true, force: true }); // this process's own, unused: each run has its own
}

if (RUNS > 1) {
  runMany().catch((e) => {
    console.error(e);
    process.exitCode = 1;
  });
} else {
  say(`seed ${SEED} (replay: CHAOS_SEED=${SEED} npm run chaos)`);
  main()
    .catch((e) => {
      console.error(e);
      process.exitCode = 1;
    })
    .finally(async () => {
      for (const d of devices)
        if (d.proc && d.proc.exitCode === null) {
          d.proc.kill('SIGCONT');
          d.proc.kill('SIGKILL');
        }
      if (nats.proc) nats.proc.kill('SIGKILL');
      await sleep(500);
      if (keep) console.log(`databases kept: ${dbs.names.join(', ')}`);
      else await dbs.dropAll();
      if (!process.exitCode && !keep) rmSync(dir, { recursive: true, force: true });
      else console.log(`logs kept in ${dir}`);
    });
}
