import 'reflect-metadata';
import { Logger } from '@nestjs/common';
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
    const code = (e as NodeJS.ErrnoException)?.code;
    if (code === 'EADDRINUSE') fail(`PORT: ${config.port} is already in use`);
    if (code === 'EADDRNOTAVAIL' || code === 'ENOTFOUND' || code === 'EAI_AGAIN')
      fail(`HOST: cannot listen on ${config.host} (${code})`);
    throw e;
  }
  const logger = new Logger('Device');
  logger.log(
    `device ${config.deviceName} (${device.deviceId}) ${device.host.defaultLibrary ? `of library ${device.host.defaultLibrary}` : 'holding no library yet'} listening on ${listenUrl(config.host, device.port)}${config.apiToken ? ' (API_TOKEN required)' : ''}`,
  );

  const stop = (signal: string) => {
    logger.log(`${signal}: stopping`);
    setTimeout(() => {
      logger.error('stop took too long; exiting');
      process.exit(0);
    }, STOP_DEADLINE_MS).unref();
    device
      .close()
      .then(() => process.exit(0))
      .catch((e) => {
        logger.error(`error while stopping: ${(e as Error).message}`);
        process.exit(0);
      });
  };
  process.once('SIGTERM', () => stop('SIGTERM'));
  process.once('SIGINT', () => stop('SIGINT'));
}

/** The URL to open: a wildcard address is reached on loopback; IPv6 goes in brackets. */
function listenUrl(host: string, port: number): string {
  if (host === '0.0.0.0' || host === '::') return `http://127.0.0.1:${port} (and every interface)`;
  return `http://${host.includes(':') ? `[${host}]` : host}:${port}`;
}

function fail(message: string): never {
  console.error(message.split('\n')[0]);
  process.exit(1);
}

main().catch((e) => {
  console.error(`fatal: ${(e as Error)?.stack ?? String(e)}`);
  process.exit(1);
});
