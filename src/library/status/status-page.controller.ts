import { randomBytes } from 'node:crypto';
import { Controller, Get, Header, Req, Res } from '@nestjs/common';
import { ApiQuery, ApiTags } from '@nestjs/swagger';
import type { Request, Response } from 'express';
import { sql } from 'kysely';
import { Db, InjectDb } from '@lib/db';
import { SyncStatusService } from '@lib/sync';
import { ApiErrors, ApiText } from '../http/openapi';
import { FIRST_CHANGES, renderStatusPage } from './status-page';

/** GET /: the status page (docs/http.md "Health and sync state"); its login is api-guard.ts's. */
@ApiTags('status')
@Controller()
export class StatusPageController {
  constructor(
    private readonly sync: SyncStatusService,
    @InjectDb() private readonly db: Db,
  ) {}

  @Get()
  @ApiText('text/html', 'the status page for a person')
  @ApiQuery({ name: 'token', required: false, description: 'log in: sets the session cookie, 303 to /' })
  @ApiErrors(401)
  @Header('content-type', 'text/html; charset=utf-8')
  @Header('cache-control', 'no-store')
  async page(@Req() req: Request, @Res({ passthrough: true }) res: Response): Promise<string> {
    const nonce = randomBytes(16).toString('base64');
    // only its own script runs, it talks only to this device, and no other site may frame it
    res.setHeader(
      'Content-Security-Policy',
      `default-src 'none'; script-src 'nonce-${nonce}'; style-src 'unsafe-inline'; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'`,
    );
    const [status, feedAfter] = await Promise.all([this.sync.status(), this.feedStart()]);
    return renderStatusPage(status, { nonce, base: basePath(req, res), feedAfter });
  }

  /** The change feed's sequence just before its newest FIRST_CHANGES changes: the page lists them at once. */
  private async feedStart(): Promise<string> {
    const r = await sql<{ hi: string | null }>`select max(last)::text as hi from sync_event_batches`.execute(this.db);
    const start = BigInt(r.rows[0]?.hi ?? '0') - BigInt(FIRST_CHANGES);
    return (start > 0n ? start : 0n).toString();
  }
}

/**
 * Where this library's routes are for the browser: `/libraries/:libraryId` when the page was asked
 * for under that prefix (LibraryHost.dispatch keeps the original URL), else '' (the default library).
 */
export function basePath(req: Request, res: Response): string {
  const id = res.locals?.libraryId;
  if (typeof id !== 'string') return '';
  const prefix = `/libraries/${id}`;
  const path = (req.originalUrl ?? '').split('?')[0].toLowerCase();
  return path === prefix || path.startsWith(`${prefix}/`) ? prefix : '';
}
