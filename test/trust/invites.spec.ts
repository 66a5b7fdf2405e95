import { readFileSync } from 'node:fs';
import { decodeInvite, encodeInvite } from '@lib/sync';
import { must, statusOf, waitConverged, waitPhase } from '../support/api';
import { Cluster } from '../support/cluster';
import { createTestDatabase } from '../support/databases';
import { queryDb } from '../support/db-queries';
import { waitFor } from '../support/device-harness';
import { Exit, runUntilExit } from '../support/exit';
import { freePort } from '../support/nats-server';

/**
 * Joining a library by invite (docs/design.md "Trust"): a device started with LIBRARY_INVITE and
 * nothing else proves the invite to the member that issued it, receives the key and the members,
 * and backfills. An invite is single use and expires; a used, expired or forged one ends the
 * joining process with exit code 1 and one line. No key material reaches any log.
 */
describe('invites', () => {
  let cluster: Cluster;
  afterEach(async () => {
    await cluster?.dispose();
  });

  it('a device joins with an invite alone; the same invite again, an expired one and a forged one are refused', async () => {
    cluster = await new Cluster().start();
    // the founder: LIBRARY_ID alone on a new database makes the library's key
    const a = await cluster.device('a', { libraryKey: null });
    const tag = await must(a, 'POST', '/tags', { name: 'from the founder' });
    expect((await a.req('POST', '/sync/invites', { ttlSeconds: 'soon' })).status).toBe(400);
    const invite = await must<{ token: string; expiresAt: string }>(a, 'POST', '/sync/invites', {});
    const validFor = Date.parse(invite.expiresAt) - Date.now();
    expect(validFor).toBeGreaterThan(23.9 * 3600_000);
    expect(validFor).toBeLessThanOrEqual(24 * 3600_000);

    // the joining device: a process given the invite, a database and NATS, and no LIBRARY_ID or key
    const j = await cluster.process('joiner', { LIBRARY_ID: '', LIBRARY_KEY: '', LIBRARY_INVITE: invite.token });
    await j.start(await freePort());
    await waitPhase(j, 'ready');
    expect((await j.req('GET', `/tags/${tag.id}`)).body.name).toBe('from the founder');
    const joined = await statusOf(j);
    expect(joined.libraryId).toBe(cluster.libraryId);
    const back = await must(j, 'POST', '/tags', { name: 'from the joiner' });
    await waitFor('the founder to have it', async () => (await a.req('GET', `/tags/${back.id}`)).status === 200);
    await waitConverged([a, j], { tags: 2 });
    await waitFor('each to pin the other', async () => {
      const [sa, sj] = [await statusOf(a), await statusOf(j)];
      return (
        sa.peers.find((p) => p.deviceId === j.deviceId)?.fingerprint === sj.fingerprint &&
        sj.peers.find((p) => p.deviceId === a.deviceId)?.fingerprint === sa.fingerprint
      );
    });

    const outputs: Exit[] = [];
    const join = async (token: string): Promise<Exit> => {
      const exit = await runUntilExit({
        DEVICE_NAME: 'late',
        DATABASE_URL: await createTestDatabase('late'),
        NATS_URL: cluster.natsUrl,
        PORT: '0',
        LIBRARY_INVITE: token,
      });
      outputs.push(exit);
      return exit;
    };
    const refused = (exit: Exit, why: RegExp) => {
      const lines = exit.stderr.trim().split('\n').filter(Boolean);
      expect({ code: exit.code, lines }).toEqual({ code: 1, lines: [expect.stringMatching(why)] });
      expect(lines[0]).toMatch(/LIBRARY_INVITE/);
    };

    // the same invite a second time
    refused(await join(invite.token), /used/);
    // an expired one
    const short = await must<{ token: string; expiresAt: string }>(a, 'POST', '/sync/invites', { ttlSeconds: 1 });
    await waitFor('the invite to expire', async () => Date.now() > Date.parse(short.expiresAt) + 50);
    refused(await join(short.token), /expired/);
    // a forged one: a real invite's id with another secret
    const real = decodeInvite((await must(a, 'POST', '/sync/invites', {})).token)!;
    refused(await join(encodeInvite({ ...real, secret: Buffer.alloc(32, 7) })), /invalid/);
    // not a token at all
    refused(await join('not-a-token'), /not an invite/);

    // no key material in any log: the library key, the invites, the devices' private keys
    const secrets: string[] = [invite.token, short.token];
    for (const url of [a.config.databaseUrl!, j.databaseUrl]) {
      for (const k of await queryDb(url, 'select secret from library_keys'))
        secrets.push(k.secret.toString('base64'), k.secret.toString('hex'));
      for (const k of await queryDb(url, 'select sign_private, box_private from device_keys'))
        for (const der of [k.sign_private, k.box_private])
          secrets.push(der.toString('base64'), der.toString('hex'), der.subarray(-32).toString('base64'));
    }
    await j.stop();
    const logs = [readFileSync(j.logFile, 'utf8'), ...outputs.map((o) => o.stdout + o.stderr)].join('\n');
    expect(logs).toMatch(/joined library/);
    for (const s of secrets) expect(logs.includes(s)).toBe(false);
  });
});
