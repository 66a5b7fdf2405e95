import {
  DynamicModule,
  Inject,
  Module,
  ModuleMetadata,
  OnApplicationBootstrap,
  OnApplicationShutdown,
  Provider,
} from '@nestjs/common';
import { DB, Db } from '@lib/db';
import { ClockService } from './clock/clock.service';
import { OwnedRepository } from './owned/owned.repository';
import { OwnedWriter } from './owned/owned-writer';
import { DevicesRepository } from './store/devices.repository';
import { SharedRepository } from './shared/shared.repository';
import { SharedWriter } from './shared/shared-writer';
import { SyncEngine } from './sync.engine';
import { SYNC_OPTIONS, SyncOptions } from './sync.options';
import { ChangeSignal } from './sync.signals';
import { SyncStatusService } from './sync-status.service';
import { SyncMetrics } from './metrics';
import { NatsRpcServer } from './rpc/nats-rpc.server';
import { PeerRpcController } from './rpc/peer-rpc.controller';
import { LibraryTrust } from './trust/library-trust';

export interface SyncModuleAsyncOptions extends Pick<ModuleMetadata, 'imports'> {
  inject?: unknown[];
  useFactory: (...args: never[]) => SyncOptions | Promise<SyncOptions>;
}

const providers: Provider[] = [
  ChangeSignal,
  OwnedRepository,
  SharedRepository,
  DevicesRepository,
  {
    provide: ClockService,
    inject: [DB, SYNC_OPTIONS],
    useFactory: async (db: Db, o: SyncOptions) => {
      const clock = new ClockService(o.deviceId, o.maxClockDriftMs);
      await clock.load(db);
      return clock;
    },
  },
  {
    provide: OwnedWriter,
    inject: [DB, ClockService, OwnedRepository, ChangeSignal, SYNC_OPTIONS],
    useFactory: (db: Db, c: ClockService, r: OwnedRepository, s: ChangeSignal, o: SyncOptions) =>
      new OwnedWriter(db, c, r, s, o.deviceId),
  },
  {
    provide: SharedWriter,
    inject: [DB, ClockService, SharedRepository, ChangeSignal],
    useFactory: (db: Db, c: ClockService, r: SharedRepository, s: ChangeSignal) => new SharedWriter(db, c, r, s),
  },
  { provide: SyncMetrics, useFactory: () => new SyncMetrics() },
  {
    provide: LibraryTrust,
    inject: [DB, SYNC_OPTIONS],
    useFactory: (db: Db, o: SyncOptions) => LibraryTrust.load(db, o.libraryId, o.deviceId),
  },
  NatsRpcServer,
  {
    provide: SyncEngine,
    inject: [
      DB,
      SYNC_OPTIONS,
      ClockService,
      OwnedRepository,
      SharedRepository,
      DevicesRepository,
      ChangeSignal,
      SyncMetrics,
      NatsRpcServer,
      LibraryTrust,
    ],
    useFactory: (
      db: Db,
      o: SyncOptions,
      c: ClockService,
      or: OwnedRepository,
      sr: SharedRepository,
      d: DevicesRepository,
      s: ChangeSignal,
      m: SyncMetrics,
      rpc: NatsRpcServer,
      t: LibraryTrust,
    ) => new SyncEngine(db, o, c, or, sr, d, s, m, rpc, t),
  },
  {
    provide: SyncStatusService,
    inject: [DB, SYNC_OPTIONS, ClockService, DevicesRepository, SharedRepository, OwnedRepository, SyncEngine],
    useFactory: (
      db: Db,
      o: SyncOptions,
      c: ClockService,
      d: DevicesRepository,
      s: SharedRepository,
      or: OwnedRepository,
      e: SyncEngine,
    ) => new SyncStatusService(db, o, c, d, s, or, e),
  },
];

/** Peer requests, served by NatsRpcServer once the application connects it (src/device.ts). */
const controllers = [PeerRpcController];

const exported = [
  SyncMetrics,
  SYNC_OPTIONS,
  ClockService,
  OwnedRepository,
  SharedRepository,
  DevicesRepository,
  OwnedWriter,
  SharedWriter,
  SyncEngine,
  SyncStatusService,
  NatsRpcServer,
  LibraryTrust,
  ChangeSignal,
];

/**
 * The sync engine as a Nest module, global so that the application's modules can inject its
 * writers and status. Needs a DB provider (DbModule) in the application. Starts
 * syncing when the application has bootstrapped and stops before the database closes.
 */
@Module({})
export class SyncModule implements OnApplicationBootstrap, OnApplicationShutdown {
  constructor(@Inject(SyncEngine) private readonly engine: SyncEngine) {}

  static forRoot(options: SyncOptions): DynamicModule {
    return {
      module: SyncModule,
      global: true,
      controllers,
      providers: [{ provide: SYNC_OPTIONS, useValue: options }, ...providers],
      exports: exported,
    };
  }

  static forRootAsync(options: SyncModuleAsyncOptions): DynamicModule {
    return {
      module: SyncModule,
      global: true,
      imports: options.imports ?? [],
      controllers,
      providers: [
        { provide: SYNC_OPTIONS, inject: (options.inject ?? []) as never[], useFactory: options.useFactory },
        ...providers,
      ],
      exports: exported,
    };
  }

  async onApplicationBootstrap(): Promise<void> {
    await this.engine.start();
  }

  async onApplicationShutdown(): Promise<void> {
    await this.engine.stop();
  }
}
