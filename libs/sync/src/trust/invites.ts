import { Logger } from '@nestjs/common';
import { randomBytes } from 'node:crypto';
import { connect, type ConnectionOptions, type Msg, type NatsConnection } from 'nats';
import type { Db } from '@lib/db';
import { InvalidInputError } from '../errors';
import { inboxPrefixOf } from '../transport/nats-auth';
import type { LibrarySubjects } from '../transport/subjects';
import { type Certificate, parseCertificate } from './certificates';
import {
  decrypt,
  derive,
  encrypt,
  KeyPairs,
  keyIdOf,
  sha256,
  signDigest,
  unwrap,
  uuidBytes,
  uuidText,
  verifyDigest,
} from './crypto';
import type { LibraryTrust, MembershipExport } from './library-trust';
import { TrustRepository } from './trust.repository';

/**
 * Invites (docs/design.md "Trust"). A member issues a single-use token; a new device started with
 * it proves the invite to that member over NATS (on sync.<lib>.join.<member>), and receives its
 * certificate, the member list and the library's keys sealed to its own X25519 key.
 *
 *   token   = base64url( 1 | library (16) | inviter (16) | inviter's signing key (32) | invite id (16)
 *                        | secret (32) | expires at, ms (8) )
 *   request = invite id (16) | joiner's signing key (32) | AES-GCM box under HKDF(secret) | signature (64)
 *   reply   = 0 | JSON {error}                      (refused)
 *           | 1 | AES-GCM box under HKDF(secret) | inviter's signature (64)
 */
export const DEFAULT_INVITE_TTL_SECONDS = 24 * 3600;
const TOKEN_BYTES = 1 + 16 + 16 + 32 + 16 + 32 + 8;

export interface InviteToken {
  libraryId: string;
  inviter: string;
  inviterSignPublic: Buffer;
  id: Buffer;
  secret: Buffer;
  expiresAt: Date;
}

export function encodeInvite(t: InviteToken): string {
  const exp = Buffer.alloc(8);
  exp.writeBigUInt64BE(BigInt(t.expiresAt.getTime()));
  return Buffer.concat([
    Buffer.from([1]),
    uuidBytes(t.libraryId),
    uuidBytes(t.inviter),
    t.inviterSignPublic,
    t.id,
    t.secret,
    exp,
  ]).toString('base64url');
}

/** The token's fields, or null when it is not an invite token. */
export function decodeInvite(token: string): InviteToken | null {
  if (!/^[A-Za-z0-9_-]+$/.test(token)) return null;
  const b = Buffer.from(token, 'base64url');
  if (b.length !== TOKEN_BYTES || b[0] !== 1) return null;
  return {
    libraryId: uuidText(b.subarray(1, 17)),
    inviter: uuidText(b.subarray(17, 33)),
    inviterSignPublic: b.subarray(33, 65),
    id: b.subarray(65, 81),
    secret: b.subarray(81, 113),
    expiresAt: new Date(Number(b.readBigUInt64BE(113))),
  };
}

const inviteKey = (libraryId: string, secret: Uint8Array) => derive(secret, libraryId, 'sync-invite-v1');
const replyAad = (subject: string, nonce: Uint8Array) =>
  Buffer.from(`join-reply|${subject}|${Buffer.from(nonce).toString('hex')}`, 'utf8');

interface JoinRequest {
  device: string;
  name: string;
  boxPublic: string;
}
interface JoinAccepted {
  certificate: string;
  membership: MembershipExport;
}

/** The member's side: issues invites and answers the devices that present them. */
export class InviteService {
  private readonly logger = new Logger('Invites');
  private readonly repo = new TrustRepository();
  private servedOn: NatsConnection | null = null;

  constructor(
    private readonly db: Db,
    private readonly trust: LibraryTrust,
    private readonly subjects: LibrarySubjects,
  ) {}

  async create(ttlSeconds = DEFAULT_INVITE_TTL_SECONDS): Promise<{ token: string; expiresAt: string }> {
    if (!Number.isInteger(ttlSeconds) || ttlSeconds < 1 || ttlSeconds > 30 * 24 * 3600)
      throw new InvalidInputError('ttlSeconds', 'expected an integer from 1 to 2592000 (30 days)');
    if (this.trust.removed) throw new InvalidInputError('deviceId', 'this device was removed from the library');
    const invite = {
      id: randomBytes(16),
      secret: randomBytes(32),
      expiresAt: new Date(Date.now() + ttlSeconds * 1000),
    };
    await this.repo.addInvite(this.db, invite);
    const token = encodeInvite({
      libraryId: this.trust.libraryId,
      inviter: this.trust.deviceId,
      inviterSignPublic: this.trust.keys.signPublic,
      ...invite,
    });
    this.logger.log(`issued an invite valid until ${invite.expiresAt.toISOString()}`);
    return { token, expiresAt: invite.expiresAt.toISOString() };
  }

  /** Answers join requests on this connection (once per connection; the client resubscribes). */
  serve(nc: NatsConnection | null): void {
    if (!nc || this.servedOn === nc) return;
    this.servedOn = nc;
    nc.subscribe(this.subjects.join(this.trust.deviceId), {
      callback: (err, msg) => {
        if (!err && msg.reply)
          void this.answer(msg).catch((e) => this.logger.warn(`join request: ${(e as Error).message}`));
      },
    });
  }

  private async answer(msg: Msg): Promise<void> {
    const refuse = (error: string) => {
      this.logger.warn(`refused a join request: ${error}`);
      msg.respond(Buffer.concat([Buffer.from([0]), Buffer.from(JSON.stringify({ error }))]));
    };
    const d = Buffer.from(msg.data);
    if (d.length < 16 + 32 + 28 + 64) return refuse('malformed request');
    const id = d.subarray(0, 16);
    const signPublic = d.subarray(16, 48);
    const box = d.subarray(48, d.length - 64);
    const invite = await this.repo.invite(this.db, id);
    if (!invite) return refuse('unknown invite');
    const key = inviteKey(this.trust.libraryId, invite.secret);
    const aad = Buffer.concat([Buffer.from(msg.subject, 'utf8'), id, signPublic]);
    const plain = decrypt(key, box, aad);
    if (!plain || !verifyDigest(signPublic, sha256(aad, box), d.subarray(d.length - 64)))
      return refuse('invalid invite');
    let req: JoinRequest;
    try {
      req = JSON.parse(plain.toString('utf8')) as JoinRequest;
      if (!/^[0-9a-f-]{36}$/.test(req.device) || typeof req.boxPublic !== 'string') throw new Error('fields');
    } catch {
      return refuse('malformed request');
    }
    if (new Date(invite.expires_at).getTime() <= Date.now()) return refuse('expired invite');
    const member = this.trust.isMember(req.device) || this.trust.fingerprints().has(req.device);
    if (member && !this.trust.isMember(req.device)) return refuse('this device was removed from the library');
    if (!(await this.repo.useInvite(this.db, id, req.device))) return refuse('invite already used');
    const boxPublic = Buffer.from(req.boxPublic, 'base64');
    if (boxPublic.length !== 32) return refuse('malformed request');
    const cert = this.trust.certify({ device: req.device, signPublic, boxPublic });
    await this.trust.pinNow(this.db, cert);
    const accepted: JoinAccepted = {
      certificate: cert.bytes.toString('base64'),
      membership: this.trust.exportFor(req.device),
    };
    const rAad = replyAad(msg.subject, box.subarray(0, 12));
    const sealed = encrypt(key, Buffer.from(JSON.stringify(accepted)), rAad);
    msg.respond(
      Buffer.concat([Buffer.from([1]), sealed, signDigest(this.trust.keys.signPrivate, sha256(rAad, sealed))]),
    );
    this.logger.log(`device ${req.name} (${req.device}) joined the library by invite`);
  }
}

/** A join that cannot succeed (used, expired, forged invite; no member answering). */
export class JoinError extends Error {}

/**
 * The new device's side: presents the invite to the member that issued it and stores what it
 * receives (its certificate, the members, the keys). Retries while nobody answers, until deadline.
 */
export async function joinByInvite(
  db: Db,
  o: {
    token: InviteToken;
    deviceId: string;
    deviceName: string;
    servers: string[];
    connectOptions?: Partial<ConnectionOptions>;
    deadlineMs?: number;
  },
  keys: KeyPairs,
): Promise<{ inviter: string; membership: MembershipExport }> {
  const t = o.token;
  if (t.expiresAt.getTime() <= Date.now()) throw new JoinError('LIBRARY_INVITE: the invite has expired');
  const deadline = Date.now() + (o.deadlineMs ?? 60_000);
  const subject = `sync.${t.libraryId}.join.${t.inviter}`;
  const key = inviteKey(t.libraryId, t.secret);
  const request: JoinRequest = { device: o.deviceId, name: o.deviceName, boxPublic: keys.boxPublic.toString('base64') };
  const aad = Buffer.concat([Buffer.from(subject, 'utf8'), t.id, keys.signPublic]);
  const box = encrypt(key, Buffer.from(JSON.stringify(request)), aad);
  const data = Buffer.concat([t.id, keys.signPublic, box, signDigest(keys.signPrivate, sha256(aad, box))]);

  let nc: NatsConnection | null = null;
  let lastError = 'NATS unreachable';
  try {
    while (Date.now() < deadline) {
      try {
        nc ??= await connect({
          servers: o.servers,
          name: `${o.deviceName} (joining)`,
          timeout: 5000,
          // the joiner's NATS user (pre-provisioned) reads only its own inbox, as a member's does
          inboxPrefix: inboxPrefixOf(o.deviceId),
          ...o.connectOptions,
        });
        const reply = Buffer.from((await nc.request(subject, data, { timeout: 10_000 })).data);
        if (reply[0] === 0) {
          const { error } = JSON.parse(reply.subarray(1).toString('utf8')) as { error: string };
          throw new JoinError(`LIBRARY_INVITE: the invite was refused (${error})`);
        }
        const sealed = reply.subarray(1, reply.length - 64);
        const rAad = replyAad(subject, box.subarray(0, 12));
        if (
          reply[0] !== 1 ||
          !verifyDigest(t.inviterSignPublic, sha256(rAad, sealed), reply.subarray(reply.length - 64))
        )
          throw new JoinError('LIBRARY_INVITE: the reply is not signed by the inviting device');
        const plain = decrypt(key, sealed, rAad);
        if (!plain) throw new JoinError('LIBRARY_INVITE: the reply does not decrypt');
        const accepted = JSON.parse(plain.toString('utf8')) as JoinAccepted;
        await store(db, t, o.deviceId, keys, accepted);
        return { inviter: t.inviter, membership: accepted.membership };
      } catch (e) {
        if (e instanceof JoinError) throw e;
        lastError = (e as Error).message;
        await new Promise((r) => setTimeout(r, 1000));
      }
    }
  } finally {
    await nc?.close().catch(() => undefined);
  }
  throw new JoinError(`LIBRARY_INVITE: the inviting device ${t.inviter} did not answer (${lastError})`);
}

/** Keeps this device's certificate and the library's keys; the members are merged once loaded. */
async function store(db: Db, t: InviteToken, deviceId: string, keys: KeyPairs, accepted: JoinAccepted): Promise<void> {
  const repo = new TrustRepository();
  const cert: Certificate | null = parseCertificate(Buffer.from(accepted.certificate, 'base64'));
  if (!cert || cert.device !== deviceId || cert.addedBy !== t.inviter || !cert.signPublic.equals(keys.signPublic))
    throw new JoinError('LIBRARY_INVITE: the certificate received does not match this device');
  await db.transaction().execute(async (tx) => {
    for (const k of accepted.membership.keys) {
      const keyId = Buffer.from(k.keyId, 'hex');
      const secret = unwrap(
        keys.boxPrivate,
        keys.boxPublic,
        Buffer.from(k.wrapped, 'base64'),
        `sync-key-v1|${t.libraryId}|${k.keyId}`,
      );
      if (!secret || !keyIdOf(t.libraryId, secret).equals(keyId))
        throw new JoinError('LIBRARY_INVITE: a library key received does not open');
      await repo.addKey(tx, { keyId, epoch: k.epoch, secret, recipients: k.recipients }, t.inviter);
    }
    await repo.pin(tx, cert);
  });
}
