import type { NextFunction, Request, RequestHandler, Response } from 'express';
import { AccessPolicy, decideAccess, normalizeOrigin } from './api-access';
import { errorBody } from './http-error.filter';

export interface ApiAccessConfig {
  apiToken: string | null;
  apiAllowedOrigins: readonly string[];
}

/** One header's value (Node gives arrays only for headers that may repeat, like Set-Cookie). */
function header(req: Request, name: string): string | undefined {
  const v = req.headers[name];
  return Array.isArray(v) ? v[0] : v;
}

/**
 * The one gate of the HTTP API (docs/http.md "Who may call the API"): installed before body parsing
 * and routing, so it covers every route, those added later and unknown ones, and a refused request
 * reaches no handler. The rules are api-access.ts; this only reads the request and answers.
 */
export function apiGuard(config: ApiAccessConfig): RequestHandler {
  const policy: AccessPolicy = {
    token: config.apiToken,
    allowedOrigins: new Set(config.apiAllowedOrigins.map((o) => normalizeOrigin(o) ?? o)),
  };
  return (req: Request, res: Response, next: NextFunction) => {
    const decision = decideAccess(
      {
        method: req.method,
        path: req.path,
        port: req.socket.localPort ?? 0,
        host: header(req, 'host'),
        origin: header(req, 'origin'),
        authorization: header(req, 'authorization'),
        cookie: header(req, 'cookie'),
        loginToken: req.query?.token,
      },
      policy,
    );
    if (decision.kind === 'allow') return next();
    res.setHeader('Cache-Control', 'no-store');
    if (decision.kind === 'login') {
      res.cookie(decision.cookie, decision.value, { httpOnly: true, sameSite: 'strict', path: '/' });
      // the token stays in the browser's history only, never in a Referer
      res.setHeader('Referrer-Policy', 'no-referrer');
      return res.redirect(303, '/');
    }
    if (decision.status === 401) res.setHeader('WWW-Authenticate', 'Bearer');
    return res.status(decision.status).json(errorBody(decision.status, decision.message));
  };
}
