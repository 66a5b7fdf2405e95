import { Body, Controller, Delete, Get, HttpCode, Param, Post, Res } from '@nestjs/common';
import { z } from 'zod';
import type { Response } from 'express';
import { SyncEngine, SyncStatusService } from '@lib/sync';
import { bodyOf, parseInput, uuidParam } from '../http/validation';

const createInviteInput = z
  .object({
    ttlSeconds: z
      .number()
      .int()
      .min(1)
      .max(30 * 24 * 3600)
      .optional(),
  })
  .strict();
import { errorBody } from '../http/http-error.filter';
import { HealthService } from './health.service';

/** GET /health, /sync/status, /sync/digest, invites and peer removal (docs/http.md "Health and sync state"). */
@Controller()
export class StatusController {
  constructor(
    private readonly health: HealthService,
    private readonly sync: SyncStatusService,
    private readonly engine: SyncEngine,
  ) {}

  /** A single-use invite for a new device (LIBRARY_INVITE), valid 24 h unless ttlSeconds says otherwise. */
  @Post('sync/invites')
  @HttpCode(201)
  createInvite(@Body() body: unknown) {
    const { ttlSeconds } = parseInput(createInviteInput, bodyOf(body));
    return this.engine.createInvite(ttlSeconds);
  }

  /**
   * Removes a device from the library: its messages are refused from then on and the library key
   * moves to a new epoch it cannot open (it also stops holding back pruning).
   */
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
