#!/usr/bin/env node
// What sealing costs per row (docs/design.md "Trust"): a page of 1,000 entry rows as the engine
// sends it, sealed by one member and opened by another (AES-256-GCM + Ed25519, once per page),
// against the JSON encoding and parsing of the same page measured in the same run.
//   npm run build && node bench/seal.cjs
const { randomBytes, randomUUID } = require('node:crypto');
const { join } = require('node:path');

const { LibraryTrust } = require(join(__dirname, '..', 'dist', 'libs', 'sync', 'src', 'trust', 'library-trust.js'));
const ROWS = 1000;
const ROUNDS = Number(process.env.BENCH_ROUNDS || 300);

const library = randomUUID();
const secret = randomBytes(32);
const a = LibraryTrust.inMemory(library, randomUUID(), secret);
const b = LibraryTrust.inMemory(library, randomUUID(), secret);
const owner = randomUUID();
const rows = Array.from({ length: ROWS }, (_, i) => ({
  id: randomUUID(),
  deviceId: owner,
  locationId: randomUUID(),
  name: `IMG_${i}.jpg`,
  path: `/photos/2026/IMG_${i}.jpg`,
  kind: 'file',
  sizeBytes: 1000 + i,
  modifiedAt: new Date(1.7e12 + i * 1000).toISOString(),
  version: `0001970000000${i}-000000-${owner}`,
}));
const subject = `sync.${library}.log.state.${owner}`;

function time(fn) {
  fn(); // warm up
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < ROUNDS; i++) fn();
  return Number(process.hrtime.bigint() - t0) / ROUNDS / 1000; // µs per page
}

let page;
const encode = time(() => (page = Buffer.from(JSON.stringify({ rows }))));
const decode = time(() => JSON.parse(page.toString('utf8')));
let sealed;
const seal = time(() => (sealed = a.seal(subject, page)));
const open = time(() => b.open(subject, sealed.data));
const us = (x) => `${(x / ROWS).toFixed(2)} µs/row`;
console.log(`page: ${ROWS} entry rows, ${page.length} bytes of JSON`);
console.log(`  JSON encode ${us(encode)}, JSON parse ${us(decode)} (the baseline)`);
console.log(`  seal ${us(seal)} (sender), open ${us(open)} (receiver)`);
console.log(`  ratio sealing / JSON: sender ${(seal / encode).toFixed(2)}, receiver ${(open / decode).toFixed(2)}`);
