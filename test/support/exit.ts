import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { tempDataDir } from './databases';

const MAIN = join(__dirname, '..', '..', 'dist', 'main.js');

export interface Exit {
  code: number | null;
  stderr: string;
  stdout: string;
}

/**
 * Runs dist/main.js, expected to end by itself (a bad configuration, a refused invite), with
 * exactly `env` on top of PATH and HOME: nothing of the test's own environment leaks in.
 */
export function runUntilExit(env: Record<string, string>, timeoutMs = 60_000): Promise<Exit> {
  const merged: Record<string, string> = { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '', ...env };
  for (const k of Object.keys(merged)) if (merged[k] === '') delete merged[k];
  // cwd: an empty directory, so that no .env file supplies what the test leaves out
  const child = spawn(process.execPath, [MAIN], {
    cwd: tempDataDir('exit-cwd-'),
    env: merged,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d) => (stdout += d));
  child.stderr.on('data', (d) => (stderr += d));
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(
        new Error(`did not exit within ${timeoutMs} ms; stdout: ${stdout.slice(-500)} stderr: ${stderr.slice(-500)}`),
      );
    }, timeoutMs);
    child.once('exit', (code) => {
      clearTimeout(timer);
      // 'exit' may precede the last 'data' events; 'close' follows them
      child.once('close', () => resolve({ code, stdout, stderr }));
      if (child.stdout.closed && child.stderr.closed) resolve({ code, stdout, stderr });
    });
  });
}
