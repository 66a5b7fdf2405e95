import { Controller, Delete, Get, HttpCode, Param, Res } from '@nestjs/common';
import type { Response } from 'express';
import { SyncEngine, SyncStatusService } from '@lib/sync';
import { uuidParam } from '../http/validation';
import { errorBody } from '../http/http-error.filter';
import { HealthService } from './health.service';

/** GET /health, /sync/status and /sync/digest (docs/http.md "Health and sync state"). */
@Controller()
export class StatusController {
  constructor(
    private readonly health: HealthService,
    private readonly sync: SyncStatusService,
    private readonly engine: SyncEngine,
  ) {}

  /** Removes a device from the library (it stops holding back log pruning and tombstone collection). */
  @Delete('sync/peers/:deviceId')
  @HttpCode(204)
  async removePeer(@Param('deviceId') deviceId: string): Promise<void> {
    await this.engine.removePeer(uuidParam('deviceId', deviceId));
  }

  /** 200 while the database answers, else 503 with the error shape and the same health fields. */
  @Get('health')
  async getHealth(@Res({ passthrough: true }) res: Response) {
    const { healthy, body } = await this.health.check();
    if (healthy) return body;
    res.status(503);
    return { ...errorBody(503, `database: ${body.database}`), ...body };
  }

  @Get('sync/status')
  status() {
    return this.sync.status();
  }

  @Get('sync/digest')
  digest() {
    return this.sync.digest();
  }
}
