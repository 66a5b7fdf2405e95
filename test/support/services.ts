import net from 'node:net';
import { execFileSync } from 'node:child_process';
import { Client } from 'pg';

/**
 * Where the tests find Postgres and NATS: environment variables when set, otherwise the services
 * on localhost, otherwise Testcontainers when a Docker engine answers; otherwise the run fails
 * saying what to start.
 */
export interface TestServices {
  /** An admin connection URL (a database we may CREATE DATABASE from). */
  pgAdminUrl: string;
  natsUrl: string;
  /** Stops what this run started (containers). */
  stop(): Promise<void>;
}

export function portOpen(host: string, port: number, timeoutMs = 1500): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect({ host, port });
    const done = (ok: boolean) => {
      s.destroy();
      resolve(ok);
    };
    s.setTimeout(timeoutMs, () => done(false));
    s.once('connect', () => done(true));
    s.once('error', () => done(false));
  });
}

async function pgAnswers(url: string): Promise<boolean> {
  const c = new Client({ connectionString: url, connectionTimeoutMillis: 3000 });
  try {
    await c.connect();
    await c.query('select 1');
    return true;
  } catch {
    return false;
  } finally {
    await c.end().catch(() => undefined);
  }
}

function dockerAnswers(): boolean {
  try {
    execFileSync('docker', ['info'], { stdio: 'ignore', timeout: 5000 });
    return true;
  } catch {
    return false;
  }
}

export async function findServices(): Promise<TestServices> {
  const stops: (() => Promise<void>)[] = [];
  let pgAdminUrl = process.env.TEST_PG_URL ?? null;
  let natsUrl = process.env.TEST_NATS_URL ?? null;
  if (!pgAdminUrl && (await pgAnswers('postgres://postgres@127.0.0.1:5432/postgres')))
    pgAdminUrl = 'postgres://postgres@127.0.0.1:5432/postgres';
  if (!natsUrl && (await portOpen('127.0.0.1', 4222))) natsUrl = 'nats://127.0.0.1:4222';
  if ((!pgAdminUrl || !natsUrl) && dockerAnswers()) {
    if (!pgAdminUrl) {
      const { PostgreSqlContainer } = await import('@testcontainers/postgresql');
      const pg = await new PostgreSqlContainer('postgres:15').withCommand(['postgres', '-c', 'fsync=off']).start();
      pgAdminUrl = pg.getConnectionUri();
      stops.push(async () => void (await pg.stop()));
    }
    if (!natsUrl) {
      const { NatsContainer } = await import('@testcontainers/nats');
      const nats = await new NatsContainer('nats:2.10').withJetStream().start();
      natsUrl = `nats://${nats.getHost()}:${nats.getMappedPort(4222)}`;
      stops.push(async () => void (await nats.stop()));
    }
  }
  const missing = [
    !pgAdminUrl && 'PostgreSQL (set TEST_PG_URL, or start it on 127.0.0.1:5432)',
    !natsUrl && 'nats-server with JetStream (set TEST_NATS_URL, or run `nats-server -js` on 127.0.0.1:4222)',
  ].filter(Boolean);
  if (missing.length) {
    throw new Error(
      `tests need ${missing.join(' and ')}; no Docker engine answered for Testcontainers either. bash .ci/run installs and starts both.`,
    );
  }
  return {
    pgAdminUrl: pgAdminUrl!,
    natsUrl: natsUrl!,
    stop: async () => void (await Promise.all(stops.map((s) => s()))),
  };
}
