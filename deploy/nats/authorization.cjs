#!/usr/bin/env node
/**
 * NATS authorization of a library's devices: one NATS user per device, allowed to publish only on
 * the subjects that name it as their sender (log, presence, acks), requests (rpc, join) and the
 * JetStream API calls on its own durable consumer, and to subscribe only to what is addressed to
 * it and to its own reply inbox (_INBOX_<device id without dashes>). What a device publishes is
 * sealed and signed anyway (docs/design.md "Trust"); this keeps a device's credentials from
 * speaking as another device or draining another device's consumer on the broker itself.
 *
 *   node deploy/nats/authorization.cjs          writes deploy/nats/nats.conf from DEVICES below
 *   node deploy/nats/authorization.cjs --check  exits 1 when deploy/nats/nats.conf is not up to date
 *
 * A device joining later (LIBRARY_INVITE) needs a user of its own before it starts: add it to
 * DEVICES with the DEVICE_ID it will be started with, regenerate, and reload the NATS servers.
 */
const { readFileSync, writeFileSync } = require('node:fs');
const { join } = require('node:path');

/**
 * The devices of docker-compose.yml (fixed DEVICE_IDs, its LIBRARY_ID). `password` is a nats.conf value: a
 * `$VARIABLE` is read from the NATS server's environment (compose passes it from .env).
 */
const LIBRARY = '6f1c2b1e-8d4a-4c3e-9b7f-2a5d0e9c4b11';
const DEVICES = [
  { name: 'device-a', id: '0a0a0a0a-0000-4000-8000-00000000000a', password: '$NATS_PASSWORD_A', libraries: [LIBRARY] },
  { name: 'device-b', id: '0b0b0b0b-0000-4000-8000-00000000000b', password: '$NATS_PASSWORD_B', libraries: [LIBRARY] },
  { name: 'device-c', id: '0c0c0c0c-0000-4000-8000-00000000000c', password: '$NATS_PASSWORD_C', libraries: [LIBRARY] },
];

/** An operator's user (the nats CLI, monitoring scripts): every subject. */
const ADMIN = { name: 'admin', password: '$NATS_ADMIN_PASSWORD' };

const compact = (deviceId) => deviceId.replace(/-/g, '');

/**
 * What device `deviceId` may do in `libraries` (every library when none is given). A stream name
 * (SYNC_<library>) is one token and NATS wildcards match whole tokens only: without the library
 * list the stream is `*`, and a device could create a stream of its own that captures subjects it
 * may not subscribe to. Give the libraries wherever they are known.
 */
function devicePermissions(deviceId, libraries = []) {
  const self = deviceId.toLowerCase();
  const durable = `device_${compact(self)}`;
  const libs = libraries.length ? libraries.map((l) => l.toLowerCase()) : ['*'];
  const streams = libraries.length ? libs.map((l) => `SYNC_${compact(l)}`) : ['*'];
  return {
    publish: [
      ...libs.flatMap((l) => [
        `sync.${l}.log.*.${self}`,
        `sync.${l}.presence.${self}`,
        `sync.${l}.ack.*.${self}`,
        // requests to a peer or to every device (rpc.all; methods may have dots: owned.page), and
        // invites presented to a member
        `sync.${l}.rpc.>`,
        `sync.${l}.join.*`,
      ]),
      // JetStream: the library's stream (info, create), its own durable consumer, its acks
      '$JS.API.INFO',
      ...streams.flatMap((s) => [
        `$JS.API.STREAM.INFO.${s}`,
        `$JS.API.STREAM.CREATE.${s}`,
        `$JS.API.CONSUMER.INFO.${s}.${durable}`,
        `$JS.API.CONSUMER.CREATE.${s}.${durable}`,
        `$JS.API.CONSUMER.CREATE.${s}.${durable}.>`,
        `$JS.API.CONSUMER.DURABLE.CREATE.${s}.${durable}`,
        `$JS.API.CONSUMER.MSG.NEXT.${s}.${durable}`,
        `$JS.ACK.${s}.${durable}.>`,
      ]),
    ],
    subscribe: [
      ...libs.flatMap((l) => [
        `sync.${l}.presence.*`,
        `sync.${l}.ack.${self}.*`,
        `sync.${l}.rpc.${self}.>`,
        `sync.${l}.rpc.all.>`,
        `sync.${l}.join.${self}`,
      ]),
      // replies to its requests, JetStream's included (pull fetches deliver there)
      `_INBOX_${compact(self)}.>`,
    ],
    // answering a request publishes once to the asker's inbox, whatever its name
    allowResponses: true,
  };
}

/** A password as nats.conf reads it: `$VARIABLE` from the environment, or a quoted literal. */
const confValue = (password) => (/^\$[A-Za-z_][A-Za-z0-9_]*$/.test(password) ? password : JSON.stringify(password));
const list = (subjects, indent) =>
  `[\n${subjects.map((s) => `${indent}  ${JSON.stringify(s)}`).join('\n')}\n${indent}]`;

/** The `authorization { users = [...] }` block for `devices` ({name, id, password, libraries?}) and an optional admin. */
function authorizationBlock(devices, admin = null) {
  const users = devices.map((d) => {
    const p = devicePermissions(d.id, d.libraries);
    return [
      '    {',
      `      # ${d.name} (${d.id})`,
      `      user: ${JSON.stringify(d.name)}`,
      `      password: ${confValue(d.password)}`,
      '      permissions: {',
      `        publish: { allow: ${list(p.publish, '        ')} }`,
      `        subscribe: { allow: ${list(p.subscribe, '        ')} }`,
      `        allow_responses: ${p.allowResponses}`,
      '      }',
      '    }',
    ].join('\n');
  });
  if (admin) users.unshift(`    { user: ${JSON.stringify(admin.name)}, password: ${confValue(admin.password)} }`);
  return `authorization {\n  users = [\n${users.join('\n')}\n  ]\n}\n`;
}

/** The whole nats.conf of docker-compose.yml (its servers add cluster and JetStream flags). */
function natsConf(devices = DEVICES, admin = ADMIN) {
  return [
    '# Generated by deploy/nats/authorization.cjs from its device list: do not edit, run',
    '#   node deploy/nats/authorization.cjs',
    "# Passwords are variables of the NATS servers' environment (docker-compose.yml, from .env).",
    '',
    authorizationBlock(devices, admin),
  ].join('\n');
}

const CONF = join(__dirname, 'nats.conf');

if (require.main === module) {
  const wanted = natsConf();
  if (process.argv.includes('--check')) {
    const current = readFileSync(CONF, 'utf8');
    if (current !== wanted) {
      console.error('deploy/nats/nats.conf is out of date: run node deploy/nats/authorization.cjs');
      process.exit(1);
    }
  } else {
    writeFileSync(CONF, wanted);
    console.log(`wrote ${CONF} (${DEVICES.length} devices)`);
  }
}

module.exports = { LIBRARY, DEVICES, ADMIN, devicePermissions, authorizationBlock, natsConf };
