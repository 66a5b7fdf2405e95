import type { AddressInfo } from 'node:net';
import { INestApplication, LoggerService, LogLevel } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import type { NestExpressApplication } from '@nestjs/platform-express';
import { Db, migrateToLatest, openDatabase } from '@lib/db';
import { DevicesRepository, IdentityError, NatsRpcServer, setUpTrust } from '@lib/sync';
import type { DeviceConfig } from './config/config';
import { AppModule } from './app.module';
import { configureHttp } from './library/http/configure-http';

export interface RunningDevice {
  app: INestApplication;
  db: Db;
  deviceId: string;
  libraryId: string;
  port: number;
  embedded: boolean;
  /** Stops syncing, closes the HTTP server, then the database. */
  close(): Promise<void>;
}

/**
 * Starts one device: open the database, migrate, resolve the device id, then serve HTTP and sync.
 * Used by main.ts and by tests that run several devices in one process.
 */
export async function startDevice(
  config: DeviceConfig,
  logger?: LoggerService | LogLevel[] | false,
): Promise<RunningDevice> {
  const { db, embedded } = await openDatabase({ databaseUrl: config.databaseUrl, dataDir: config.dataDir });
  try {
    await migrateToLatest(db);
    const devices = new DevicesRepository();
    const libraryId = config.libraryId ?? (await devices.storedLibrary(db));
    if (!libraryId)
      throw new IdentityError('LIBRARY_ID', 'required (a uuid) on a new database, unless LIBRARY_INVITE is given');
    const deviceId = await devices.resolveSelf(db, {
      configuredId: config.deviceId,
      name: config.deviceName,
      libraryId,
    });
    await setUpTrust(db, {
      libraryId,
      deviceId,
      deviceName: config.deviceName,
      libraryKey: config.libraryKey,
      invite: config.libraryInvite,
      natsServers: config.natsServers,
    });
    const resolved = { ...config, libraryId };
    const app = await NestFactory.create<NestExpressApplication>(
      AppModule.forDevice(resolved, deviceId, db, embedded),
      {
        bodyParser: false,
        logger: logger ?? ['log', 'warn', 'error'],
        abortOnError: false,
        // keep-alive connections must not hold a graceful stop past its deadline
        forceCloseConnections: true,
      },
    );
    configureHttp(app, config);
    // peer requests: the sync module's handlers, served on the engine's NATS connection. Listening
    // before the engine starts (app.listen bootstraps it) answers peers from its first link on.
    app.connectMicroservice({ strategy: app.get(NatsRpcServer) }, { inheritAppConfig: false });
    await app.startAllMicroservices();
    await app.listen(config.port, config.host);
    const port = (app.getHttpServer().address() as AddressInfo).port;
    let closing: Promise<void> | null = null;
    return {
      app,
      db,
      deviceId,
      libraryId,
      port,
      embedded,
      close: () =>
        (closing ??= (async () => {
          await app.close();
          await db.destroy();
        })()),
    };
  } catch (e) {
    await db.destroy().catch(() => undefined);
    throw e;
  }
}
