import type { NestExpressApplication } from '@nestjs/platform-express';
import express, { NextFunction, Request, Response } from 'express';
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
