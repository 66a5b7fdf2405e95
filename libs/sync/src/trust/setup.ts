import { Logger } from '@nestjs/common';
import { randomBytes } from 'node:crypto';
import type { ConnectionOptions } from 'nats';
import type { Db } from '@lib/db';
import { natsAuthOptions, type NatsAuth } from '../transport/nats-auth';
import { keyIdOf } from './crypto';
import { type InviteToken, joinByInvite } from './invites';
import { LibraryTrust } from './library-trust';
import { TrustRepository } from './trust.repository';

export interface TrustSetupOptions {
  libraryId: string;
  deviceId: string;
  deviceName: string;
  /** LIBRARY_KEY: the pre-shared key. */
  libraryKey: Buffer | null;
  /** LIBRARY_INVITE: join by invite. */
  invite: InviteToken | null;
  natsServers: string[];
  /** This device's NATS credentials, for presenting an invite on servers that require them. */
  natsAuth?: NatsAuth | null;
  connectOptions?: Partial<ConnectionOptions>;
  /** How long an invite's member may take to answer. Default 60 s. */
  joinDeadlineMs?: number;
}

/**
 * Gives the device's database what the trust model needs before sync starts (docs/design.md
 * "Trust"): this device's key pairs (made once), and the library's key, in one of three ways when
 * the database holds none yet: the pre-shared LIBRARY_KEY, an invite presented to a member, or,
 * with neither, founding the library (a new random key). Afterwards the database holds the keys
 * and the variables are not read again.
 */
export async function setUpTrust(db: Db, o: TrustSetupOptions): Promise<'stored' | 'preshared' | 'joined' | 'founded'> {
  const logger = new Logger('Trust');
  const repo = new TrustRepository();
  const keys = await repo.identity(db);
  const stored = await repo.keys(db);
  if (stored.length > 0) {
    if (o.libraryKey && !stored.some((k) => k.keyId.equals(keyIdOf(o.libraryId, o.libraryKey!))))
      logger.warn('LIBRARY_KEY is not the key this database holds; the database keeps its own keys');
    return 'stored';
  }
  if (o.libraryKey) {
    await LibraryTrust.storeKey(db, o.libraryId, o.libraryKey);
    return 'preshared';
  }
  if (o.invite) {
    const joined = await joinByInvite(
      db,
      {
        token: o.invite,
        deviceId: o.deviceId,
        deviceName: o.deviceName,
        servers: o.natsServers,
        connectOptions: { ...natsAuthOptions(o.natsAuth), ...o.connectOptions },
        deadlineMs: o.joinDeadlineMs,
      },
      keys,
    );
    const trust = await LibraryTrust.load(db, o.libraryId, o.deviceId);
    await trust.importFrom(joined.inviter, joined.membership);
    logger.log(`joined library ${o.libraryId} by an invite of device ${joined.inviter}`);
    return 'joined';
  }
  await LibraryTrust.storeKey(db, o.libraryId, randomBytes(32));
  logger.log(
    `founded library ${o.libraryId} with a new key; invite other devices with POST /sync/invites ` +
      'and start them with LIBRARY_INVITE=<token>',
  );
  return 'founded';
}
