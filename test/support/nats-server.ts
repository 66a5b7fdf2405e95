import { ChildProcess, execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, openSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { portOpen } from './services';

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.listen(0, '127.0.0.1', () => {
      const port = (srv.address() as net.AddressInfo).port;
      srv.close(() => resolve(port));
    });
    srv.on('error', reject);
  });
}

export function natsServerBinary(): string | null {
  for (const bin of [process.env.NATS_SERVER_BIN, 'nats-server', '/usr/sbin/nats-server', '/usr/bin/nats-server']) {
    if (!bin) continue;
    try {
      execFileSync(bin, ['--version'], { stdio: 'ignore' });
      return bin;
    } catch {
      /* try the next */
    }
  }
  return null;
}

/** A URL where no nats-server listens (a device that cannot reach its broker). */
export async function deadNatsUrl(): Promise<string> {
  return `nats://127.0.0.1:${await freePort()}`;
}

/**
 * A nats-server process of the test's own (JetStream, its own port and store), so a test can
 * kill it, restart it on the same port, or wipe its storage without touching anything else.
 * `settings` are extra lines of its configuration file (limits such as `max_payload: 32768`).
 */
export class NatsServerProcess {
  private proc: ChildProcess | null = null;
  private readonly dir = mkdtempSync(join(tmpdir(), 'nats-'));
  readonly storeDir = join(this.dir, 'js');
  port = 0;

  constructor(private readonly settings = '') {}

  get url(): string {
    return `nats://127.0.0.1:${this.port}`;
  }

  async start(): Promise<void> {
    const bin = natsServerBinary();
    if (!bin) throw new Error('nats-server is not installed: apt-get install nats-server (or set NATS_SERVER_BIN)');
    if (!this.port) this.port = await freePort();
    const conf = join(this.dir, 'nats.conf');
    writeFileSync(
      conf,
      `host: 127.0.0.1\nport: ${this.port}\n${this.settings}\njetstream { store_dir: "${this.storeDir}" }\n`,
    );
    const log = openSync(join(this.dir, 'nats.log'), 'a');
    this.proc = spawn(bin, ['-c', conf], { stdio: ['ignore', log, log] });
    const end = Date.now() + 15000;
    while (!(await portOpen('127.0.0.1', this.port, 300))) {
      if (this.proc.exitCode !== null) throw new Error(`nats-server exited with ${this.proc.exitCode}`);
      if (Date.now() > end) throw new Error('nats-server did not open its port in 15 s');
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  /** Kills the server (SIGKILL by default) and waits until it is gone. */
  async stop(signal: NodeJS.Signals = 'SIGKILL'): Promise<void> {
    const p = this.proc;
    this.proc = null;
    if (!p || p.exitCode !== null) return;
    await new Promise<void>((r) => {
      p.once('exit', () => r());
      p.kill(signal);
    });
  }

  /** Deletes the JetStream store (streams and consumers); only while stopped. */
  wipe(): void {
    rmSync(this.storeDir, { recursive: true, force: true });
  }

  async dispose(): Promise<void> {
    await this.stop();
    rmSync(this.dir, { recursive: true, force: true });
  }
}
