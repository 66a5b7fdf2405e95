// What the scripts share on a local machine: free ports, waiting for a port, scratch databases.
'use strict';

const net = require('node:net');
const { Client } = require('pg');

/**
 * The environment of a device a script starts for itself: loopback, no token. '' overrides what a
 * user's shell or ./.env says (HOST=0.0.0.0 would require a token; an API_TOKEN would 401 the script).
 */
const LOCAL_API_ENV = Object.freeze({ HOST: '127.0.0.1', API_TOKEN: '', API_ALLOWED_ORIGINS: '' });

/** A TCP port nothing listens on right now. */
function freePort() {
  return new Promise((resolve) => {
    const s = net.createServer();
    s.listen(0, '127.0.0.1', () => {
      const p = s.address().port;
      s.close(() => resolve(p));
    });
  });
}

/** Whether something accepts connections on 127.0.0.1:port. */
function portOpen(port) {
  return new Promise((r) => {
    const s = net.connect(port, '127.0.0.1', () => {
      s.end();
      r(true);
    });
    s.on('error', () => r(false));
  });
}

/** Empty databases created on the server of adminUrl, remembered so that they can be dropped. */
function scratchDatabases(adminUrl) {
  const names = [];
  return {
    names,
    /** A new empty database (dropped first if it exists); returns its URL. */
    async create(name) {
      const c = new Client({ connectionString: adminUrl });
      await c.connect();
      try {
        await c.query(`drop database if exists "${name}" with (force)`);
        await c.query(`create database "${name}"`);
      } finally {
        await c.end();
      }
      names.push(name);
      const u = new URL(adminUrl);
      u.pathname = `/${name}`;
      return u.toString();
    },
    async dropAll() {
      const c = new Client({ connectionString: adminUrl });
      await c.connect();
      try {
        for (const d of names.splice(0)) await c.query(`drop database if exists "${d}" with (force)`).catch(() => {});
      } finally {
        await c.end();
      }
    },
  };
}

/**
 * A nats-server with JetStream on free loopback ports, its store and log in `dir`; pushed onto
 * `children`. With monitor, its HTTP monitoring port too. Resolves once it accepts connections.
 */
async function startNatsServer(dir, children, { monitor = false } = {}) {
  const { spawn } = require('node:child_process');
  const { openSync } = require('node:fs');
  const { join } = require('node:path');
  const port = await freePort();
  const monitorPort = monitor ? await freePort() : null;
  const log = openSync(join(dir, 'nats.log'), 'a');
  const args = ['-a', '127.0.0.1', '-p', String(port), '-js', '-sd', join(dir, 'js')];
  if (monitorPort) args.push('-m', String(monitorPort));
  const proc = spawn('nats-server', args, { stdio: ['ignore', log, log] });
  children.push(proc);
  while (!(await portOpen(port)) || (monitorPort && !(await portOpen(monitorPort))))
    await new Promise((r) => setTimeout(r, 50));
  return { url: `nats://127.0.0.1:${port}`, monitor: monitorPort ? `http://127.0.0.1:${monitorPort}` : null };
}

/**
 * Stops child processes: SIGTERM first (a device stops gracefully, and writes its CPU profile when
 * started with --cpu-prof), SIGKILL for whatever still runs after 10 s.
 */
async function stopChildren(children) {
  await Promise.all(
    children.map(async (p) => {
      if (p.exitCode !== null || p.signalCode !== null) return;
      const exited = new Promise((r) => p.once('exit', r));
      p.kill('SIGTERM');
      await Promise.race([exited, new Promise((r) => setTimeout(r, 10_000))]);
      if (p.exitCode === null && p.signalCode === null) p.kill('SIGKILL');
    }),
  );
}

module.exports = { freePort, portOpen, scratchDatabases, startNatsServer, stopChildren, LOCAL_API_ENV };
