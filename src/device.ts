import type { AddressInfo } from 'node:net';
import { INestApplication, Logger, LoggerService, LogLevel } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import type { NestExpressApplication } from '@nestjs/platform-express';
import { Db, openStore } from '@lib/db';
import { migrateToLatest } from '@lib/db';
import { deviceConnectOptions, DevicesRepository, NatsHub, TrustRepository } from '@lib/sync';
import type { DeviceConfig } from './config/config';
import { configureHttp } from './library/http/configure-http';
import { DeviceModule } from './libraries/device.module';
import { LibraryHost } from './libraries/library-host';
import { DeviceLogger, levelsUpTo } from './logging/device-logger';
import { OpenApiDocument } from './openapi/openapi-document.provider';

export interface RunningDevice {
  /** The device's HTTP application (its own routes, and the libraries' behind them). */
  http: INestApplication;
  /** The device's libraries. */
  host: LibraryHost;
  /** The default library's application (its engine, writers, status); throws when there is none. */
  readonly app: INestApplication;
  /** The default library's database; throws when there is none. */
  readonly db: Db;
  deviceId: string;
  /** The default library (null while the device holds none). */
  readonly libraryId: string;
  port: number;
  embedded: boolean;
  /** Stops syncing every library, closes the HTTP server, then the database. */
  close(): Promise<void>;
}

/**
 * Starts one device: open its store, migrate, resolve the device id and keys, open its
 * libraries (the one of LIBRARY_ID first), then serve HTTP. Used by main.ts and by tests that run
 * several devices in one process.
 */
export async function startDevice(
  config: DeviceConfig,
  logger?: LoggerService | LogLevel[] | false,
): Promise<RunningDevice> {
  const store = await openStore({ databaseUrl: config.databaseUrl, dataDir: config.dataDir });
  let logLevels: LoggerService | LogLevel[] | false = logger ?? levelsUpTo(config.logLevel);
  let nats: NatsHub | null = null;
  let host: LibraryHost | null = null;
  try {
    await migrateToLatest(store.root);
    const deviceId = await new DevicesRepository().resolveDevice(store.root, config.deviceId);
    if (logger === undefined) {
      // the device's own logger (main.ts): JSON lines or text, the device's and library's ids on each
      const format = config.logFormat ?? (process.stdout.isTTY ? 'text' : 'json');
      logLevels = new DeviceLogger({ id: deviceId, name: config.deviceName }, format, levelsUpTo(config.logLevel));
      Logger.overrideLogger(logLevels);
    }
    // the device's one NATS connection, with its credentials and an inbox of its own
    nats = new NatsHub(config.natsServers, config.deviceName, deviceConnectOptions(deviceId, config.natsAuth));
    await new TrustRepository().identity(store.root); // this device's key pairs, made once
    host = new LibraryHost(store, config, deviceId, nats, logLevels);
    await host.load();
    await host.openAtStart();
    const openapi = new OpenApiDocument(config.apiToken !== null);
    const http = await NestFactory.create<NestExpressApplication>(
      DeviceModule.forHost(host, store.root, nats, openapi),
      {
        bodyParser: false,
        logger: logLevels,
        abortOnError: false,
        // keep-alive connections must not hold a graceful stop past its deadline
        forceCloseConnections: true,
      },
    );
    configureHttp(http, config);
    http.use(host.dispatch);
    await http.listen(config.port, config.host);
    const port = (http.getHttpServer().address() as AddressInfo).port;
    openapi.attach(http, port);
    const h = host;
    const hub = nats;
    const defaultOf = () => {
      const id = h.defaultLibrary;
      if (!id) throw new Error('this device holds no library');
      return id;
    };
    let closing: Promise<void> | null = null;
    return {
      http,
      host,
      get app() {
        return h.appOf(defaultOf())!;
      },
      get db() {
        return h.dbOf(defaultOf())!;
      },
      get libraryId() {
        return h.defaultLibrary as string;
      },
      deviceId,
      port,
      embedded: store.embedded,
      close: () =>
        (closing ??= (async () => {
          await http.close();
          await h.closeAll();
          await hub.close();
          await store.close();
        })()),
    };
  } catch (e) {
    await host?.closeAll().catch(() => undefined);
    await nats?.close();
    await store.close().catch(() => undefined);
    throw e;
  }
}
