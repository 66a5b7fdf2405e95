import { randomBytes } from 'node:crypto';
import { Controller, Get, Header, Res } from '@nestjs/common';
import { ApiQuery, ApiTags } from '@nestjs/swagger';
import type { Response } from 'express';
import { SyncStatusService } from '@lib/sync';
import { ApiErrors, ApiText } from '../http/openapi';
import { renderStatusPage } from './status-page';

/** GET /: the status page (docs/http.md "Health and sync state"); its login is api-guard.ts's. */
@ApiTags('status')
@Controller()
export class StatusPageController {
  constructor(private readonly sync: SyncStatusService) {}

  @Get()
  @ApiText('text/html', 'the status page for a person')
  @ApiQuery({ name: 'token', required: false, description: 'log in: sets the session cookie, 303 to /' })
  @ApiErrors(401)
  @Header('content-type', 'text/html; charset=utf-8')
  @Header('cache-control', 'no-store')
  async page(@Res({ passthrough: true }) res: Response): Promise<string> {
    const nonce = randomBytes(16).toString('base64');
    // only its own script runs, it talks only to this device, and no other site may frame it
    res.setHeader(
      'Content-Security-Policy',
      `default-src 'none'; script-src 'nonce-${nonce}'; style-src 'unsafe-inline'; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'`,
    );
    return renderStatusPage(await this.sync.status(), nonce);
  }
}
