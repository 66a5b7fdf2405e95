// The API_TOKEN a script sends to devices (README "Who may call the API"): from the environment,
// else from ./.env (KEY=value lines, as the device itself reads them). Never printed.
'use strict';

const fs = require('node:fs');
const path = require('node:path');

/** `KEY=value` lines of a .env file (optional `export`, quotes removed, `#` comments). */
function readDotEnv(file) {
  const out = {};
  if (!fs.existsSync(file)) return out;
  for (const line of fs.readFileSync(file, 'utf8').split(/\r?\n/)) {
    const m = /^\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.*?)\s*$/.exec(line);
    if (!m || line.trimStart().startsWith('#')) continue;
    out[m[1]] = m[2].replace(/^(['"])(.*)\1$/, '$2');
  }
  return out;
}

/** API_TOKEN of the environment (an empty value counts as unset), else of ./.env, else null. */
function apiToken(cwd = process.cwd(), env = process.env) {
  const fromEnv = (env.API_TOKEN || '').trim();
  if (fromEnv) return fromEnv;
  const fromFile = (readDotEnv(path.join(cwd, '.env')).API_TOKEN || '').trim();
  return fromFile || null;
}

/** `Authorization: Bearer <token>`, or no header without a token. */
function authHeaders(token) {
  return token ? { authorization: `Bearer ${token}` } : {};
}

module.exports = { apiToken, authHeaders, readDotEnv };
