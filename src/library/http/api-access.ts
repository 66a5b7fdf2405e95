import { createHash, createHmac, timingSafeEqual } from 'node:crypto';
import { BlockList, isIP } from 'node:net';

/**
 * Who may call the API (docs/http.md "Who may call the API"), as pure decisions over a request's
 * headers. The HTTP shell (api-guard.ts) applies them to every route, before any handler runs.
 */

/** Routes a container health check or a load balancer calls without a token. */
export const HEALTH_PATHS: ReadonlySet<string> = new Set(['/health', '/health/live', '/health/ready']);

/** Host names a browser only reaches on this machine, whatever DNS says (no DNS rebinding). */
const LOOPBACK_NAMES = new Set(['localhost', '127.0.0.1', '[::1]']);

const loopbackAddresses = new BlockList();
loopbackAddresses.addSubnet('127.0.0.0', 8, 'ipv4');
loopbackAddresses.addAddress('::1', 'ipv6');

/** HOST values that keep the API on this machine: 127.0.0.0/8, ::1 and localhost. */
export function isLoopbackHost(host: string): boolean {
  const h = host
    .trim()
    .toLowerCase()
    .replace(/^\[(.*)\]$/, '$1');
  if (h === 'localhost') return true;
  const family = isIP(h);
  if (family === 4) return loopbackAddresses.check(h, 'ipv4');
  if (family === 6) return loopbackAddresses.check(h, 'ipv6');
  return false;
}

/** `scheme://host[:port]` in the form a browser sends it (lower case, default port left out), or null. */
export function normalizeOrigin(raw: string): string | null {
  const s = raw.trim();
  if (!/^[a-z][a-z0-9+.-]*:\/\/[^/?#]+$/i.test(s)) return null;
  try {
    const u = new URL(s);
    if (!u.host || u.username || u.password) return null;
    return `${u.protocol}//${u.host}`;
  } catch {
    return null;
  }
}

/** The host name of a Host header (`[::1]:3000` → `[::1]`), or null when it is not one. */
export function hostnameOf(hostHeader: string | undefined): string | null {
  if (!hostHeader || /[\s/?#@\\]/.test(hostHeader)) return null;
  try {
    return new URL(`http://${hostHeader}`).hostname;
  } catch {
    return null;
  }
}

/** A path as routing sees it: without trailing slashes, in lower case (Express routes ignore both). */
function routePath(path: string): string {
  return (path.replace(/\/+$/, '') || '/').toLowerCase();
}

export const isHealthPath = (path: string): boolean => HEALTH_PATHS.has(routePath(path));

/** The login cookie of the status page, one per port so that devices on one host keep theirs apart. */
export const sessionCookieName = (port: number): string => `device_session_${port}`;

/** The cookie's value: derived from the token, so the cookie jar never holds the token itself. */
export function sessionValue(token: string): string {
  return createHmac('sha256', token).update('device status page session').digest('base64url');
}

/** Constant time whatever the lengths: both sides are hashed to 32 bytes first. */
export function secretsEqual(given: string, expected: string): boolean {
  const a = createHash('sha256').update(given, 'utf8').digest();
  const b = createHash('sha256').update(expected, 'utf8').digest();
  return timingSafeEqual(a, b);
}

/** The value of `name` in a Cookie header. */
export function cookieValue(cookieHeader: string | undefined, name: string): string | undefined {
  if (!cookieHeader) return undefined;
  for (const part of cookieHeader.split(';')) {
    const eq = part.indexOf('=');
    if (eq > 0 && part.slice(0, eq).trim() === name) return part.slice(eq + 1).trim();
  }
  return undefined;
}

export interface AccessPolicy {
  /** API_TOKEN, or null: loopback only, no token. */
  token: string | null;
  /** API_ALLOWED_ORIGINS, normalized. */
  allowedOrigins: ReadonlySet<string>;
}

export interface AccessRequest {
  method: string;
  path: string;
  /** The port the request came in on: the device's own origins are on it. */
  port: number;
  host?: string;
  origin?: string;
  authorization?: string;
  cookie?: string;
  /** `?token=` of `GET /` (the status page's login); an array when repeated. */
  loginToken?: unknown;
}

export type AccessDecision =
  | { kind: 'allow' }
  | { kind: 'login'; cookie: string; value: string }
  | { kind: 'deny'; status: 401 | 403; message: string };

const allow: AccessDecision = { kind: 'allow' };

/** http://localhost:PORT, http://127.0.0.1:PORT, http://[::1]:PORT. */
export function ownOrigins(port: number): string[] {
  return [...LOOPBACK_NAMES].map((h) => `http://${h}:${port}`);
}

function originAllowed(origin: string, req: AccessRequest, policy: AccessPolicy): boolean {
  const o = normalizeOrigin(origin);
  if (o === null) return false; // `null` (sandboxed frames, file:) and garbage are foreign
  if (policy.allowedOrigins.has(o) || ownOrigins(req.port).includes(o)) return true;
  // with a token, the device may sit behind a proxy under any name: a page served from that same
  // name is the device's own page (and still needs the token)
  if (policy.token !== null && req.host) {
    const self = [`http://${req.host}`, `https://${req.host}`].map(normalizeOrigin);
    return self.includes(o);
  }
  return false;
}

function bearerOf(authorization: string | undefined): string | null {
  const m = /^Bearer[ \t]+(\S+)[ \t]*$/i.exec(authorization ?? '');
  return m ? m[1] : null;
}

/**
 * In this order: a foreign Origin (403), a non-loopback Host without a token (403), then the token
 * (401); the health routes need neither Host nor token. `GET /?token=` is the status page's login.
 */
export function decideAccess(req: AccessRequest, policy: AccessPolicy): AccessDecision {
  if (req.origin !== undefined && !originAllowed(req.origin, req, policy))
    return {
      kind: 'deny',
      status: 403,
      message: `Origin: ${req.origin} may not call this device (API_ALLOWED_ORIGINS)`,
    };
  if (isHealthPath(req.path)) return allow;

  if (policy.token === null) {
    const name = hostnameOf(req.host);
    if (name === null || !LOOPBACK_NAMES.has(name))
      return {
        kind: 'deny',
        status: 403,
        message: 'Host: this device answers only to localhost, 127.0.0.1 or [::1] (set API_TOKEN to expose it)',
      };
    return allow;
  }

  if (req.loginToken !== undefined && routePath(req.path) === '/' && req.method === 'GET') {
    if (typeof req.loginToken === 'string' && secretsEqual(req.loginToken, policy.token))
      return { kind: 'login', cookie: sessionCookieName(req.port), value: sessionValue(policy.token) };
    return { kind: 'deny', status: 401, message: 'token: wrong token' };
  }
  const bearer = bearerOf(req.authorization);
  if (bearer !== null)
    return secretsEqual(bearer, policy.token)
      ? allow
      : { kind: 'deny', status: 401, message: 'Authorization: wrong token' };
  const session = cookieValue(req.cookie, sessionCookieName(req.port));
  if (session !== undefined && secretsEqual(session, sessionValue(policy.token))) return allow;
  return { kind: 'deny', status: 401, message: 'Authorization: Bearer <API_TOKEN> required' };
}
