import 'reflect-metadata';
import { ConfigError, parseConfig } from './config/config';
import { startDevice } from './device';
import { DatabaseConnectError } from '@lib/db';
import { IdentityError, JoinError } from '@lib/sync';

const STOP_DEADLINE_MS = 9000;

async function main(): Promise<void> {
  let config;
  try {
    config = parseConfig();
  } catch (e) {
    if (e instanceof ConfigError) fail(e.message);
    throw e;
  }
  let device;
  try {
    device = await startDevice(config);
  } catch (e) {
    if (e instanceof DatabaseConnectError || e instanceof IdentityError || e instanceof JoinError) fail(e.message);
    if ((e as NodeJS.ErrnoException)?.code === 'EADDRINUSE') fail(`PORT: ${config.port} is already in use`);
    throw e;
  }
  console.log(
    `device ${config.deviceName} (${device.deviceId}) ${device.host.defaultLibrary ? `of library ${device.host.defaultLibrary}` : 'holding no library yet'} listening on http://127.0.0.1:${device.port}`,
  );

  const stop = (signal: string) => {
    console.log(`${signal}: stopping`);
    setTimeout(() => {
      console.error('stop took too long; exiting');
      process.exit(0);
    }, STOP_DEADLINE_MS).unref();
    device
      .close()
      .then(() => process.exit(0))
      .catch((e) => {
        console.error(`error while stopping: ${(e as Error).message}`);
        process.exit(0);
      });
  };
  process.once('SIGTERM', () => stop('SIGTERM'));
  process.once('SIGINT', () => stop('SIGINT'));
}

function fail(message: string): never {
  console.error(message.split('\n')[0]);
  process.exit(1);
}

main().catch((e) => {
  console.error(`fatal: ${(e as Error)?.stack ?? String(e)}`);
  process.exit(1);
});
