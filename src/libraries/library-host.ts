import { randomUUID } from 'node:crypto';
import { Logger, LoggerService, LogLevel } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { ExpressAdapter, NestExpressApplication } from '@nestjs/platform-express';
import express, { NextFunction, Request, Response } from 'express';
import { AggregatorRegistry, collectDefaultMetrics, MetricObjectWithValues, MetricValue, Registry } from 'prom-client';
import type { Db, DeviceStore } from '@lib/db';
import { ROOT_LOCATION } from '@lib/db';
import {
  ConflictError,
  DevicesRepository,
  type InviteToken,
  InvalidInputError,
  NatsHub,
  NatsRpcServer,
  NotFoundError,
  setUpTrust,
  SyncEngine,
  SyncMetrics,
} from '@lib/sync';
import type { DeviceConfig } from '../config/config';
import { AppModule } from '../app.module';
import { configureHttp } from '../library/http/configure-http';
import { withLogContext } from '../logging/device-logger';
import { errorBody } from '../library/http/http-error.filter';
import { MetricsController } from '../metrics/metrics.controller';
import type { LibraryView } from './library.view';

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
/** Routes of the device itself: never handed to a library. */
const DEVICE_ROUTE =
  /^\/(libraries(\/[^/]*(\/(open|close))?)?|health(\/(live|ready))?|metrics|openapi\.json|docs(\/[^/]*)?)\/?$/;
/** `/libraries/:id/`, with the slash, is that library's status page, not the device's route. */
const LIBRARY_ROOT = /^\/libraries\/[^/]+\/$/;

/** Whether a path is the device's own route (the others are the default library's). */
export const isDeviceRoute = (path: string): boolean => DEVICE_ROUTE.test(path) && !LIBRARY_ROOT.test(path);
/** How long a close waits for the library's requests in flight. */
const DRAIN_MS = 10_000;

export type { LibraryView } from './library.view';

/** How a library comes to this device (API.md "Libraries": POST /libraries, or the variables at start). */
export interface LibrarySource {
  libraryId?: string;
  name?: string;
  key?: Buffer | null;
  invite?: InviteToken | null;
}

type State = 'opening' | 'open' | 'closing' | 'closed';

interface Library {
  libraryId: string;
  name: string;
  location: string;
  state: State;
  app: NestExpressApplication | null;
  db: Db | null;
  inFlight: number;
  drained: (() => void) | null;
  /** Serializes open, close and leave of this library. */
  busy: Promise<unknown>;
}

/**
 * The libraries of one device (API.md "Libraries"). Each open library is a Nest application of
 * its own (database, engine, trust, HTTP routes) on the device's one store and NATS connection;
 * `dispatch` hands it the requests under /libraries/:libraryId, and the unprefixed ones when it
 * is the default library. Which libraries the device holds, and whether each is open, is kept in
 * the root database's device_libraries and survives restarts.
 */
export class LibraryHost {
  private readonly logger = new Logger('Libraries');
  private readonly libraries = new Map<string, Library>();
  private readonly devices = new DevicesRepository();
  private defaultId: string | null = null;
  private stopping = false;

  constructor(
    private readonly store: DeviceStore,
    private readonly config: DeviceConfig,
    readonly deviceId: string,
    private readonly nats: NatsHub,
    private readonly logger$: LoggerService | LogLevel[] | false,
  ) {}

  get syncEnabled(): boolean {
    return this.config.syncEnabled;
  }

  /** The default library: the one LIBRARY_ID names, else the first one opened. */
  get defaultLibrary(): string | null {
    return this.defaultId;
  }

  /** The Nest application of an open library (tests and tools reach its providers through it). */
  appOf(libraryId: string): NestExpressApplication | null {
    return this.libraries.get(libraryId)?.app ?? null;
  }

  dbOf(libraryId: string): Db | null {
    return this.libraries.get(libraryId)?.db ?? null;
  }

  /** Reads the device's libraries, adopting the one a database from before libraries holds. */
  async load(): Promise<void> {
    const root = this.store.root;
    const legacy = await this.devices.storedLibrary(root);
    if (legacy)
      await root
        .insertInto('device_libraries')
        .values({ library_id: legacy, location: ROOT_LOCATION, open: true })
        .onConflict((oc) => oc.doNothing())
        .execute();
    const rows = await root.selectFrom('device_libraries').selectAll().orderBy('created_at').execute();
    for (const r of rows)
      this.libraries.set(r.library_id, {
        libraryId: r.library_id,
        name: r.name,
        location: r.location,
        state: 'closed',
        app: null,
        db: null,
        inFlight: 0,
        drained: null,
        busy: Promise.resolve(),
      });
  }

  /** At start: the library of LIBRARY_ID (or the invite) first, as the default, then every one left open. */
  async openAtStart(): Promise<void> {
    const c = this.config;
    if (c.libraryId) {
      await this.add({ libraryId: c.libraryId, key: c.libraryKey, invite: c.libraryInvite });
      this.defaultId = c.libraryId;
    }
    const rows = await this.store.root.selectFrom('device_libraries').selectAll().orderBy('created_at').execute();
    for (const r of rows) if (r.open) await this.open(r.library_id);
  }

  list(): LibraryView[] {
    return [...this.libraries.values()].map((l) => this.view(l));
  }

  view(l: Library | string): LibraryView {
    const lib = typeof l === 'string' ? this.get(l) : l;
    let phase = lib.state === 'open' ? 'uninitialized' : lib.state;
    if (lib.state === 'open' && lib.app) phase = lib.app.get(SyncEngine).phase;
    return {
      libraryId: lib.libraryId,
      name: lib.name,
      open: lib.state === 'open' || lib.state === 'opening',
      default: lib.libraryId === this.defaultId,
      phase,
    };
  }

  private get(libraryId: string): Library {
    if (!UUID.test(libraryId)) throw new InvalidInputError('libraryId', `not a uuid: "${libraryId}"`);
    const lib = this.libraries.get(libraryId.toLowerCase());
    if (!lib) throw new NotFoundError('library', libraryId);
    return lib;
  }

  /**
   * Adds a library (founding it, or joining with a key or an invite) and opens it. Returns
   * created: false when the device already held it (it is then open).
   */
  async add(source: LibrarySource): Promise<{ created: boolean; library: LibraryView }> {
    if (source.key && source.invite) throw new InvalidInputError('key', 'give a key or an invite, not both');
    const inviteLibrary = source.invite?.libraryId;
    if (source.libraryId && inviteLibrary && source.libraryId.toLowerCase() !== inviteLibrary)
      throw new InvalidInputError('invite', `the invite is for library ${inviteLibrary}, not ${source.libraryId}`);
    const libraryId = (source.libraryId ?? inviteLibrary ?? randomUUID()).toLowerCase();
    const existing = this.libraries.get(libraryId);
    if (existing) {
      await this.open(libraryId);
      return { created: false, library: this.view(existing) };
    }
    if (this.stopping) throw new ConflictError('the device is stopping');
    const rootFree = ![...this.libraries.values()].some((l) => l.location === ROOT_LOCATION);
    const location = rootFree ? ROOT_LOCATION : this.store.locationFor(libraryId);
    const lib: Library = {
      libraryId,
      name: source.name ?? '',
      location,
      state: 'opening',
      app: null,
      db: null,
      inFlight: 0,
      drained: null,
      busy: Promise.resolve(),
    };
    this.libraries.set(libraryId, lib);
    try {
      const db = await this.store.library(location);
      await this.prepare(db, lib, source);
      await this.store.root
        .insertInto('device_libraries')
        .values({ library_id: libraryId, name: lib.name, location, open: true })
        .onConflict((oc) => oc.column('library_id').doUpdateSet({ open: true }))
        .execute();
      lib.db = db;
    } catch (e) {
      this.libraries.delete(libraryId);
      // nothing of a library that could not be set up stays (a bad invite, a key of another library)
      await this.store.drop(location, null).catch(() => undefined);
      throw e;
    }
    lib.state = 'closed';
    await this.open(libraryId);
    return { created: true, library: this.view(lib) };
  }

  /** The device's identity and the library's keys in the library's database (setUpTrust). */
  private async prepare(db: Db, lib: Library, source: LibrarySource): Promise<void> {
    if (lib.location !== ROOT_LOCATION) {
      // one device, one key pair: the library's database gets the device's own
      const keys = await this.store.root.selectFrom('device_keys').selectAll().executeTakeFirst();
      if (keys)
        await db
          .insertInto('device_keys')
          .values({
            sign_private: keys.sign_private,
            sign_public: keys.sign_public,
            box_private: keys.box_private,
            box_public: keys.box_public,
          })
          .onConflict((oc) => oc.doNothing())
          .execute();
    }
    await this.devices.resolveSelf(db, {
      configuredId: this.deviceId,
      name: this.config.deviceName,
      libraryId: lib.libraryId,
    });
    await setUpTrust(db, {
      libraryId: lib.libraryId,
      deviceId: this.deviceId,
      deviceName: this.config.deviceName,
      libraryKey: source.key ?? null,
      invite: source.invite ?? null,
      natsServers: this.config.natsServers,
      natsAuth: this.config.natsAuth,
    });
  }

  /** Opens a library: its engine starts (backfill, catch-up, consumers). Opening an open library does nothing. */
  open(libraryId: string): Promise<LibraryView> {
    const lib = this.get(libraryId);
    return this.serialize(lib, async () => {
      if (lib.state === 'open') return this.view(lib);
      if (this.stopping) throw new ConflictError('the device is stopping');
      lib.state = 'opening';
      try {
        lib.db ??= await this.store.library(lib.location);
        // this device's name may have changed since: its row says so again
        await this.devices.resolveSelf(lib.db, {
          configuredId: this.deviceId,
          name: this.config.deviceName,
          libraryId: lib.libraryId,
        });
        lib.app = await this.startApp(lib.libraryId, lib.db);
        await this.setOpen(lib.libraryId, true);
        lib.state = 'open';
        this.defaultId ??= lib.libraryId;
        this.logger.log(`library ${lib.libraryId} open`);
      } catch (e) {
        lib.state = 'closed';
        throw e;
      }
      return this.view(lib);
    });
  }

  /**
   * Closes a library gracefully, as SIGTERM does for the process: new requests get 409, those in
   * flight finish, then its engine stops (what peers write meanwhile waits in its durable consumer).
   */
  close(libraryId: string, persist = true): Promise<LibraryView> {
    const lib = this.get(libraryId);
    return this.serialize(lib, async () => {
      if (lib.state !== 'open') return this.view(lib);
      lib.state = 'closing';
      if (persist) await this.setOpen(lib.libraryId, false);
      await this.drain(lib);
      const app = lib.app;
      lib.app = null;
      await app?.close();
      lib.state = 'closed';
      this.logger.log(`library ${lib.libraryId} closed`);
      return this.view(lib);
    });
  }

  /** Leaves a library: this device removes itself from its members, stops it and deletes its data here. */
  leave(libraryId: string): Promise<{ announced: boolean }> {
    const lib = this.get(libraryId);
    return this.serialize(lib, async () => {
      let announced = false;
      if (lib.state === 'open' && lib.app) {
        lib.state = 'closing';
        await this.drain(lib);
        announced = await lib.app
          .get(SyncEngine)
          .leave()
          .then(
            () => true,
            (e: Error) => {
              this.logger.warn(`leaving library ${lib.libraryId}: the members were not told (${e.message})`);
              return false;
            },
          );
        const app = lib.app;
        lib.app = null;
        await app.close();
      }
      lib.state = 'closed';
      await this.store.root.deleteFrom('device_libraries').where('library_id', '=', lib.libraryId).execute();
      await this.store.drop(lib.location, lib.db);
      lib.db = null;
      this.libraries.delete(lib.libraryId);
      if (this.defaultId === lib.libraryId) this.defaultId = null;
      this.logger.log(`left library ${lib.libraryId}${announced ? '' : ' (members not told)'}`);
      return { announced };
    });
  }

  private async setOpen(libraryId: string, open: boolean): Promise<void> {
    await this.store.root.updateTable('device_libraries').set({ open }).where('library_id', '=', libraryId).execute();
  }

  private serialize<T>(lib: Library, fn: () => Promise<T>): Promise<T> {
    const run = lib.busy.then(fn, fn);
    lib.busy = run.catch(() => undefined);
    return run;
  }

  private async drain(lib: Library): Promise<void> {
    if (lib.inFlight === 0) return;
    await new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, DRAIN_MS);
      lib.drained = () => {
        clearTimeout(timer);
        resolve();
      };
    });
    lib.drained = null;
  }

  private startApp(libraryId: string, db: Db): Promise<NestExpressApplication> {
    // everything the library's app starts (its engine's timers, loops and subscriptions) logs its id
    return withLogContext({ libraryId }, () => this.createApp(libraryId, db));
  }

  private async createApp(libraryId: string, db: Db): Promise<NestExpressApplication> {
    const app = await NestFactory.create<NestExpressApplication>(
      AppModule.forDevice({ ...this.config, libraryId }, this.deviceId, db, this.store.embedded, this.nats),
      new ExpressAdapter(express()),
      { bodyParser: false, logger: this.logger$, abortOnError: false },
    );
    configureHttp(app, null);
    app.get(SyncMetrics).registry.setDefaultLabels({ library: libraryId });
    app.connectMicroservice({ strategy: app.get(NatsRpcServer) }, { inheritAppConfig: false });
    await app.startAllMicroservices();
    await app.init();
    return app;
  }

  /**
   * Express middleware of the device's HTTP app: /libraries/:libraryId/... goes to that library
   * (400 for an id that is not a uuid, 404 for a library not here, 409 for a closed one), the
   * device's own routes go on, and every other route goes to the default library.
   */
  dispatch = (req: Request, res: Response, next: NextFunction): void => {
    const [path, query] = splitUrl(req.url);
    if (isDeviceRoute(path)) return next();
    let libraryId: string | null;
    let rest = path;
    const prefixed = /^\/libraries\/([^/]+)(\/.*)$/.exec(path);
    if (prefixed) {
      libraryId = prefixed[1];
      rest = prefixed[2];
      if (!UUID.test(libraryId)) return void send(res, 400, `libraryId: not a uuid: "${libraryId}"`);
      libraryId = libraryId.toLowerCase();
    } else {
      libraryId = this.defaultId;
      if (!libraryId)
        return void send(res, 404, 'this device holds no library: create or join one with POST /libraries');
    }
    const lib = this.libraries.get(libraryId);
    if (!lib) return void send(res, 404, `library ${libraryId} is not on this device`);
    if (lib.state !== 'open' || !lib.app)
      return void send(res, 409, `library ${libraryId} is closed: open it with POST /libraries/${libraryId}/open`);
    // a change feed stays open: closing the library ends it (the client reconnects), it is not drained
    const counted = rest !== '/sync/events';
    if (counted) lib.inFlight++;
    let done = !counted;
    const finished = () => {
      if (done) return;
      done = true;
      if (--lib.inFlight === 0) lib.drained?.();
    };
    res.once('finish', finished);
    res.once('close', finished);
    req.url = rest + query;
    res.locals.libraryId = libraryId;
    const handle = lib.app.getHttpAdapter().getInstance() as express.Express;
    withLogContext({ libraryId }, () => handle(req, res, next));
  };

  /** Prometheus text of every open library's metrics, each labelled with its library. */
  async metrics(): Promise<string> {
    // the process's own (CPU, memory, event loop lag, handles): once, not per library
    const all: MetricObjectWithValues<MetricValue<string>>[][] = [await processRegistry().getMetricsAsJSON()];
    for (const lib of this.libraries.values()) {
      if (lib.state !== 'open' || !lib.app) continue;
      await lib.app.get(MetricsController).scrape(); // refreshes the gauges read at scrape time
      all.push(await lib.app.get(SyncMetrics).registry.getMetricsAsJSON());
    }
    return AggregatorRegistry.aggregate(all).metrics();
  }

  /** Closes every open library (the device stops; they stay open for the next start). */
  async closeAll(): Promise<void> {
    this.stopping = true;
    await Promise.all([...this.libraries.values()].map((l) => this.close(l.libraryId, false).catch(() => undefined)));
  }
}

function splitUrl(url: string): [string, string] {
  const i = url.indexOf('?');
  return i < 0 ? [url, ''] : [url.slice(0, i), url.slice(i)];
}

function send(res: Response, status: number, message: string): void {
  res.status(status).json(errorBody(status, message));
}

let processMetrics: Registry | null = null;
/** prom-client's default metrics of this process (process_cpu_seconds_total, nodejs_heap_*, ...), in a registry of their own. */
function processRegistry(): Registry {
  if (!processMetrics) {
    processMetrics = new Registry();
    collectDefaultMetrics({ register: processMetrics });
  }
  return processMetrics;
}
