import { Body, Controller, Delete, Get, HttpCode, Param, Post, Res } from '@nestjs/common';
import { ApiOperation, ApiTags } from '@nestjs/swagger';
import { z } from 'zod';
import type { Response } from 'express';
import { SyncEngine, SyncStatusService } from '@lib/sync';
import { ApiErrors, ApiJson, ApiJsonBody, ApiNoContent, apiSchema, ApiUuidParams } from '../http/openapi';
import { bodyOf, parseInput, uuidParam } from '../http/validation';
import { errorBody } from '../http/http-error.filter';
import { HealthService } from './health.service';
import { digestSchema, healthSchema, inviteSchema, syncStatusSchema, unhealthySchema } from './status.view';

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

const CreateInvite = apiSchema('CreateInvite', createInviteInput);
const Invite = apiSchema('Invite', inviteSchema);
const SyncStatus = apiSchema('SyncStatus', syncStatusSchema);
const Digest = apiSchema('Digest', digestSchema);
const Health = apiSchema('Health', healthSchema);
const Unhealthy = apiSchema('Unhealthy', unhealthySchema);

/** GET /health, /sync/status, /sync/digest, invites and peer removal (docs/http.md "Health and sync state"). */
@ApiTags('sync')
@Controller()
export class StatusController {
  constructor(
    private readonly health: HealthService,
    private readonly sync: SyncStatusService,
    private readonly engine: SyncEngine,
  ) {}

  /** A single-use invite for a new device (LIBRARY_INVITE), valid 24 h unless ttlSeconds says otherwise. */
  @Post('sync/invites')
  @ApiOperation({ summary: 'a single-use invite for a new device (LIBRARY_INVITE)' })
  @ApiJsonBody(CreateInvite, false)
  @ApiJson(201, Invite)
  @ApiErrors(400)
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
  @ApiOperation({ summary: 'removes a device from the library' })
  @ApiUuidParams('deviceId')
  @ApiNoContent('removed (also when it was already)')
  @ApiErrors(404)
  @HttpCode(204)
  async removePeer(@Param('deviceId') deviceId: string): Promise<void> {
    await this.engine.removePeer(uuidParam('deviceId', deviceId));
  }

  /** 200 while the database answers, else 503 with the error shape and the same health fields. */
  @Get('health')
  @ApiOperation({ summary: "the library's health (GET /health without the prefix is the device's)" })
  @ApiJson(200, Health, 'the database answers')
  @ApiJson(503, Unhealthy, 'the database does not answer')
  async getHealth(@Res({ passthrough: true }) res: Response) {
    const { healthy, body } = await this.health.check();
    if (healthy) return body;
    res.status(503);
    return { ...errorBody(503, `database: ${body.database}`), ...body };
  }

  @Get('sync/status')
  @ApiJson(200, SyncStatus)
  status() {
    return this.sync.status();
  }

  @Get('sync/digest')
  @ApiOperation({
    summary: "a hash of each model's canonical content: equal on two devices exactly when they hold the same data",
  })
  @ApiJson(200, Digest)
  digest() {
    return this.sync.digest();
  }
}
