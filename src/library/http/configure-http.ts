import type { NestExpressApplication } from '@nestjs/platform-express';
import { randomUUID } from 'node:crypto';
import { Logger } from '@nestjs/common';
import express, { NextFunction, Request, Response } from 'express';
import { withLogContext } from '../../logging/device-logger';
import { apiGuard, ApiAccessConfig } from './api-guard';
import { errorBody, HttpErrorFilter } from './http-error.filter';

/** A 10,000-entry batch is a few MB of JSON. */
const BODY_LIMIT = '64mb';

/**
 * Every HTTP app of a device: first who may call it (api-guard.ts), then JSON parsing with
 * docs/http.md's error shape: a malformed or oversized body is a 400/413 naming the body, never a
 * 500 or an HTML page. `access` null: a library's application, reached only through the device's
 * HTTP app, whose guard has already let the request in (LibraryHost.dispatch).
 */
export function configureHttp(app: NestExpressApplication, access: ApiAccessConfig | null): void {
  if (access) app.use(requestLog());
  if (access) app.use(apiGuard(access));
  app.use(express.json({ limit: BODY_LIMIT, strict: false, type: () => true }));
  app.use((err: Error & { status?: number; type?: string }, _req: Request, res: Response, next: NextFunction) => {
    if (!err) return next();
    if (err.type === 'entity.too.large') return res.status(413).json(errorBody(413, `body: larger than ${BODY_LIMIT}`));
    const status = err.status && err.status >= 400 && err.status < 500 ? err.status : 400;
    return res.status(status).json(errorBody(status, `body: malformed JSON (${err.message})`));
  });
  app.useGlobalFilters(new HttpErrorFilter());
}

/** A request id a client may pass in X-Request-Id (else one is made). */
const REQUEST_ID = /^[A-Za-z0-9._:-]{1,100}$/;

/**
 * Each request gets an id (the client's X-Request-Id when it is a plain token, else a new uuid),
 * echoed in the response's X-Request-Id and on every log line written while it is handled; when
 * it ends, one line: method, path (never the query string: it may carry the status page's token),
 * status and duration. Headers and bodies are never logged.
 */
function requestLog(): (req: Request, res: Response, next: NextFunction) => void {
  const logger = new Logger('HTTP');
  return (req, res, next) => {
    const given = req.headers['x-request-id'];
    const requestId = typeof given === 'string' && REQUEST_ID.test(given) ? given : randomUUID();
    const started = performance.now();
    res.setHeader('x-request-id', requestId);
    res.once('finish', () => {
      const path = req.originalUrl.split('?')[0];
      const libraryId = typeof res.locals.libraryId === 'string' ? res.locals.libraryId : undefined;
      withLogContext({ requestId, libraryId }, () =>
        logger.log(`${req.method} ${path} ${res.statusCode} ${(performance.now() - started).toFixed(1)} ms`),
      );
    });
    withLogContext({ requestId }, () => next());
  };
}
