import { Controller, Get, Inject, Logger, OnModuleDestroy, OnModuleInit, Query, Req, Res } from '@nestjs/common';
import { ApiHeader, ApiOperation, ApiQuery, ApiTags } from '@nestjs/swagger';
import type { Request, Response } from 'express';
import { sql } from 'kysely';
import { Db, InjectDb } from '@lib/db';
import { ChangeSignal, InvalidInputError } from '@lib/sync';
import { ApiErrors, ApiText } from '../http/openapi';

/** The models a feed can be filtered on (`?models=`). */
export const FEED_MODELS = [
  'volumes',
  'locations',
  'entries',
  'tags',
  'albums',
  'user_metadata',
  'tag_entries',
  'album_entries',
] as const;
/** Changes kept for clients that reconnect (the pruner deletes older ones). */
export const FEED_RETENTION = 100_000;
const PAGE = 500;
const POLL_MS = 200;
const KEEP_ALIVE_MS = 15_000;
/** A client this far behind (bytes buffered for it) is disconnected, with a retry hint. */
const SLOW_CLIENT_BYTES = 1 << 20;
const RETRY_MS = 2000;
const PRUNE_EVERY_MS = 30_000;

interface FeedRow {
  seq: string;
  model: string;
  id: string;
  op: string;
  origin: string | null;
}

/**
 * GET /sync/events: Server-Sent Events, one per change committed on this device (local or
 * received), `id: <seq>` from the feed's durable sequence. A client reconnecting with
 * Last-Event-ID gets every change after it (within the newest FEED_RETENTION; older: a `reset`
 * event first) and none it had. `?models=` filters. Keep-alive comments every 15 s; a client that
 * does not read is disconnected (its buffer past 1 MB) with a `retry:` hint instead of growing
 * memory.
 */
@ApiTags('sync')
@Controller()
export class EventsController implements OnModuleInit, OnModuleDestroy {
  private readonly logger = new Logger('ChangeFeed');
  private readonly open = new Set<() => void>();
  private pruner: NodeJS.Timeout | null = null;
  /** Limits of every stream (fields so that a test can shorten them on an in-process device). */
  keepAliveMs = KEEP_ALIVE_MS;
  slowClientBytes = SLOW_CLIENT_BYTES;

  /** Streams open now. */
  get openStreams(): number {
    return this.open.size;
  }

  constructor(
    @InjectDb() private readonly db: Db,
    @Inject(ChangeSignal) private readonly signal: ChangeSignal,
  ) {}

  @Get('sync/events')
  @ApiOperation({ summary: 'Server-Sent Events: one per change committed on this device (local or received)' })
  @ApiHeader({ name: 'Last-Event-ID', required: false, description: 'the id of the last event received' })
  @ApiQuery({ name: 'lastEventId', required: false, schema: { type: 'string', pattern: '^\\d{1,18}$' } })
  @ApiQuery({
    name: 'models',
    required: false,
    description: `comma-separated, of ${FEED_MODELS.join(', ')}`,
    schema: { type: 'string' },
  })
  @ApiText(
    'text/event-stream',
    '`retry: 2000` first, then per change `id: <seq>` and `data: {"seq", "model", "id", "op": "upsert"|"delete", "origin"}`; `: keep-alive` every 15 s',
  )
  @ApiErrors(400)
  async events(@Req() req: Request, @Res() res: Response, @Query() query: Record<string, unknown>): Promise<void> {
    const models = parseModels(query.models);
    const lastHeader = req.headers['last-event-id'] ?? query.lastEventId;
    let after: bigint | null = null;
    if (lastHeader !== undefined && lastHeader !== '') {
      if (typeof lastHeader !== 'string' || !/^\d{1,18}$/.test(lastHeader))
        throw new InvalidInputError('Last-Event-ID', `not a sequence number: "${String(lastHeader)}"`);
      after = BigInt(lastHeader);
    }
    const bounds = await sql<{
      lo: string | null;
      hi: string | null;
    }>`select min(seq)::text as lo, max(last)::text as hi from sync_event_batches`.execute(this.db);
    const hi = BigInt(bounds.rows[0].hi ?? '0');
    const lo = bounds.rows[0].lo === null ? hi + 1n : BigInt(bounds.rows[0].lo);

    res.status(200);
    res.setHeader('content-type', 'text/event-stream; charset=utf-8');
    res.setHeader('cache-control', 'no-cache, no-transform');
    res.setHeader('connection', 'keep-alive');
    res.setHeader('x-accel-buffering', 'no');
    res.flushHeaders();
    res.write(`retry: ${RETRY_MS}\n\n`);
    if (after === null)
      after = hi; // a new client: changes from now on
    else if (after > hi)
      after = hi; // a sequence from another database (restored, recreated): from now on
    else if (after + 1n < lo) {
      // what it missed is partly gone: it has to read the data again
      res.write(`event: reset\ndata: ${JSON.stringify({ reason: 'retention', oldest: String(lo) })}\n\n`);
      after = lo - 1n;
    }

    let closed = false;
    let wake: (() => void) | null = null;
    const stop = () => {
      closed = true;
      wake?.();
    };
    this.open.add(stop);
    req.on('close', stop);
    const unsubscribe = (['owned', 'shared', 'received'] as const).map((kind) => this.signal.on(kind, () => wake?.()));
    let lastWrite = Date.now();
    try {
      while (!closed) {
        const rows = await this.page(after, models);
        for (const r of rows) {
          res.write(
            `id: ${r.seq}\ndata: ${JSON.stringify({ seq: Number(r.seq), model: r.model, id: r.id, op: r.op, origin: r.origin })}\n\n`,
          );
          after = BigInt(r.seq);
          lastWrite = Date.now();
        }
        if (res.writableLength > this.slowClientBytes) {
          // too slow to keep up: it reconnects (with Last-Event-ID) when it is ready
          res.write(`retry: ${RETRY_MS * 5}\n\n`);
          break;
        }
        if (rows.length === PAGE) continue;
        if (Date.now() - lastWrite >= this.keepAliveMs) {
          res.write(': keep-alive\n\n');
          lastWrite = Date.now();
        }
        await new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, POLL_MS);
          wake = () => {
            clearTimeout(timer);
            resolve();
          };
        });
        wake = null;
      }
    } catch {
      // the database went away (the library is closing): the client reconnects
    } finally {
      for (const u of unsubscribe) u();
      this.open.delete(stop);
      res.end();
    }
  }

  private async page(after: bigint, models: string[] | null): Promise<FeedRow[]> {
    const filter = models ? sql`and b.model = any(${models}::text[])` : sql``;
    // a statement's changes are one batch, numbered seq..last (migration change_feed_batches)
    const r = await sql<FeedRow>`select (b.seq + u.k - 1)::text as seq, b.model, u.id, u.op, u.origin::text as origin
      from sync_event_batches b, unnest(b.ids, b.ops, b.origins) with ordinality as u(id, op, origin, k)
      where b.last > ${after.toString()}::bigint and b.seq + u.k - 1 > ${after.toString()}::bigint ${filter}
      order by b.last, u.k limit ${PAGE}`.execute(this.db);
    return r.rows;
  }

  /** Keeps the newest FEED_RETENTION changes (whether or not the device syncs). */
  onModuleInit(): void {
    this.pruner = setInterval(() => {
      sql`delete from sync_event_batches where last <= (select max(last) from sync_event_batches) - ${FEED_RETENTION}`
        .execute(this.db)
        .catch((e) => this.logger.warn(`change feed not pruned: ${(e as Error).message}`));
    }, PRUNE_EVERY_MS);
    this.pruner.unref();
  }

  /** Ends every open feed (the library closes; clients reconnect with Last-Event-ID). */
  onModuleDestroy(): void {
    if (this.pruner) clearInterval(this.pruner);
    for (const stop of [...this.open]) stop();
  }
}

function parseModels(raw: unknown): string[] | null {
  if (raw === undefined || raw === '') return null;
  if (typeof raw !== 'string') throw new InvalidInputError('models', 'give them comma-separated, once');
  const models = raw.split(',').map((m) => m.trim());
  for (const m of models)
    if (!(FEED_MODELS as readonly string[]).includes(m))
      throw new InvalidInputError('models', `unknown model "${m}" (one of ${FEED_MODELS.join(', ')})`);
  return models;
}
