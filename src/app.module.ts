import { DynamicModule, Module } from '@nestjs/common';
import { Db, DbModule } from '@lib/db';
import { NatsHub, SyncModule } from '@lib/sync';
import type { DeviceConfig } from './config/config';
import { LibraryModule } from './library/library.module';
import { MetricsModule } from './metrics/metrics.module';

/** One device: its database, the sync engine and the library's HTTP API. */
@Module({})
export class AppModule {
  static forDevice(
    config: DeviceConfig & { libraryId: string },
    deviceId: string,
    db: Db,
    embedded = false,
    nats?: NatsHub,
  ): DynamicModule {
    return {
      module: AppModule,
      imports: [
        DbModule.forDatabase(db),
        SyncModule.forRoot({
          deviceId,
          deviceName: config.deviceName,
          libraryId: config.libraryId,
          natsServers: config.natsServers,
          nats,
          natsAuth: config.natsAuth,
          enabled: config.syncEnabled,
          maxClockDriftMs: config.maxClockDriftMs,
          heartbeatIntervalMs: config.heartbeatIntervalMs,
          backfillPauseMs: config.backfillPauseMs,
          streamReplicas: config.streamReplicas,
          // PGlite is one session: a second transaction would wait for the first forever
          backfillWriters: embedded ? 1 : 2,
        }),
        LibraryModule,
        MetricsModule,
      ],
    };
  }
}
