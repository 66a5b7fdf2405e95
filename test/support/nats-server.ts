import { ChildProcess, execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, rmSync, openSync } from 'node:fs';
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

/**
 * A nats-server process of the test's own (JetStream, its own port and store), so a test can
 * kill it, restart it on the same port, or wipe its storage without touching anything else.
 */
export class NatsServerProcess {
  private proc: ChildProcess | null = null;
  readonly storeDir: string;
  port = 0;

  constructor(private readonly dir = mkdtempSync(join(tmpdir(), 'nats-'))) {
    this.storeDir = join(dir, 'js');
  }

  get url(): string {
    return `nats://127.0.0.1:${this.port}`;
  }

  async start(): Promise<void> {
    const bin = natsServerBinary();
    if (!bin) throw new Error('nats-server is not installed: apt-get install nats-server (or set NATS_SERVER_BIN)');
    if (!this.port) this.port = await freePort();
    const log = openSync(join(this.dir, 'nats.log'), 'a');
    this.proc = spawn(bin, ['-a', '127.0.0.1', '-p', String(this.port), '-js', '-sd', this.storeDir], {
      stdio: ['ignore', log, log],
    });
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
