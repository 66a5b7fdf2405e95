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

module.exports = { freePort, portOpen, scratchDatabases, LOCAL_API_ENV };
