import { readFileSync } from 'node:fs';
import { credsAuthenticator, type ConnectionOptions } from 'nats';

/**
 * How a device proves who it is to NATS servers that require it (NATS_CREDS, NATS_USER and
 * NATS_PASSWORD, NATS_TOKEN). Secrets live here only: never log this object.
 */
export type NatsAuth =
  | { kind: 'creds'; credsFile: string }
  | { kind: 'password'; user: string; pass: string }
  | { kind: 'token'; token: string };

/** The inbox prefix of a device: its NATS user may subscribe to its own replies and nobody else's. */
export const inboxPrefixOf = (deviceId: string): string => `_INBOX_${deviceId.replace(/-/g, '')}`;

/** The connection options of `auth` (none: an open server). The creds file is read at every (re)connection. */
export function natsAuthOptions(auth: NatsAuth | null | undefined): Partial<ConnectionOptions> {
  if (!auth) return {};
  switch (auth.kind) {
    case 'creds':
      return { authenticator: credsAuthenticator(() => readFileSync(auth.credsFile)) };
    case 'password':
      return { user: auth.user, pass: auth.pass };
    case 'token':
      return { token: auth.token };
  }
}

/** Everything a device's NATS connection needs to pass its server's authorization. */
export function deviceConnectOptions(deviceId: string, auth: NatsAuth | null | undefined): Partial<ConnectionOptions> {
  return { ...natsAuthOptions(auth), inboxPrefix: inboxPrefixOf(deviceId) };
}
