import { Controller, DynamicModule, Get, Inject, Module, Res } from '@nestjs/common';
import { ApiOperation, ApiTags } from '@nestjs/swagger';
import type { Response } from 'express';
import { sql } from 'kysely';
import type { Db } from '@lib/db';
import type { NatsHub } from '@lib/sync';
import { errorBody } from '../library/http/http-error.filter';
import { ApiJson, apiSchema } from '../library/http/openapi';
import {
  healthSchema,
  livenessSchema,
  notReadySchema,
  readinessSchema,
  unhealthySchema,
} from '../library/status/status.view';
import { OpenApiController } from '../openapi/openapi.controller';
import { OpenApiDocument } from '../openapi/openapi-document.provider';
import { DeviceMetricsController, LibrariesController } from './libraries.controller';
import { LibraryHost } from './library-host';

const ROOT_DB = Symbol('ROOT_DB');
const NATS_HUB = Symbol('NATS_HUB');
/** A database that has not answered by then counts as down (a busy PGlite queues the probe). */
const DATABASE_PROBE_TIMEOUT_MS = 5000;

const Health = apiSchema('Health', healthSchema);
const Unhealthy = apiSchema('Unhealthy', unhealthySchema);
const Liveness = apiSchema('Liveness', livenessSchema);
const Readiness = apiSchema('Readiness', readinessSchema);
const NotReady = apiSchema('NotReady', notReadySchema);

/**
 * GET /health: healthy while the device's database answers. NATS is reported but never makes the
 * device unhealthy: an unreachable NATS only delays sync. `sync` is the default library's phase.
 */
@ApiTags('device')
@Controller()
export class DeviceHealthController {
  constructor(
    @Inject(ROOT_DB) private readonly db: Db,
    @Inject(NATS_HUB) private readonly nats: NatsHub,
    @Inject(LibraryHost) private readonly host: LibraryHost,
  ) {}

  @Get('health')
  @ApiOperation({ summary: "the device's health: its database answers (NATS is reported, never fails it)" })
  @ApiJson(200, Health, 'the database answers')
  @ApiJson(503, Unhealthy, 'the database does not answer')
  async health(@Res({ passthrough: true }) res: Response) {
    const database = await probe(this.db);
    const id = this.host.defaultLibrary;
    const sync = id ? this.host.view(id).phase : 'disabled';
    const nats = !this.host.syncEnabled ? 'disabled' : this.nats.connected ? 'connected' : 'disconnected';
    const body = { status: database === 'ok' ? 'ok' : 'unavailable', database, sync, nats };
    if (database === 'ok') return body;
    res.status(503);
    return { ...errorBody(503, `database: ${database}`), ...body };
  }

  /** 200 while the process serves HTTP (a liveness probe: nothing else is checked). */
  @Get('health/live')
  @ApiJson(200, Liveness, 'the process serves HTTP')
  live() {
    return { status: 'ok' };
  }

  /**
   * 200 once the default library's phase is `ready` or `disabled` (none held: `disabled`) and the
   * database answers; 503 before (backfilling, catching up) or when it does not (a readiness probe).
   */
  @Get('health/ready')
  @ApiJson(200, Readiness, "the default library's phase is ready or disabled, and the database answers")
  @ApiJson(503, NotReady, 'not yet')
  async ready(@Res({ passthrough: true }) res: Response) {
    const id = this.host.defaultLibrary;
    const sync = id ? this.host.view(id).phase : 'disabled';
    const database = await probe(this.db);
    const body = { status: 'ok', sync, database };
    if (database === 'ok' && (sync === 'ready' || sync === 'disabled')) return body;
    res.status(503);
    const why = database === 'ok' ? `phase ${sync}` : `database: ${database}`;
    return { ...errorBody(503, `not ready: ${why}`), ...body, status: 'unavailable' };
  }
}

async function probe(db: Db): Promise<string> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<string>((resolve) => {
    timer = setTimeout(() => resolve(`no answer within ${DATABASE_PROBE_TIMEOUT_MS} ms`), DATABASE_PROBE_TIMEOUT_MS);
  });
  const answer = sql`select 1`.execute(db).then(
    () => 'ok',
    (e: unknown) => `error: ${(e as Error)?.message ?? String(e)}`,
  );
  try {
    return await Promise.race([answer, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/** The device's own HTTP routes: its libraries, health, metrics and API description; every other route is a library's. */
@Module({})
export class DeviceModule {
  static forHost(host: LibraryHost, root: Db, nats: NatsHub, openapi: OpenApiDocument): DynamicModule {
    return {
      module: DeviceModule,
      controllers: [LibrariesController, DeviceHealthController, DeviceMetricsController, OpenApiController],
      providers: [
        { provide: LibraryHost, useValue: host },
        { provide: ROOT_DB, useValue: root },
        { provide: NATS_HUB, useValue: nats },
        { provide: OpenApiDocument, useValue: openapi },
      ],
    };
  }
}
