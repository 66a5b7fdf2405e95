import { Logger } from '@nestjs/common';
import { randomBytes } from 'node:crypto';
import type { Db, DbOrTx } from '@lib/db';
import { RejectedMessageError } from '../errors';
import {
  Certificate,
  CERTIFICATE_BYTES,
  certificateSignedBy,
  issueCertificate,
  issueRemoval,
  parseCertificate,
  parseRemoval,
  Removal,
  removalSignedBy,
} from './certificates';
import {
  decrypt,
  encrypt,
  fingerprint,
  generateKeyPairs,
  KEY_ID_BYTES,
  keyIdOf,
  KeyPairs,
  sealKeyOf,
  sha256,
  SIGNATURE_BYTES,
  signDigest,
  unwrap,
  verifyDigest,
  wrapTo,
} from './crypto';
import { StoredKey, StoredMember, TrustRepository } from './trust.repository';

const MAGIC = 0x53; // 'S'
const VERSION = 1;
const HEADER_BYTES = 2 + KEY_ID_BYTES + CERTIFICATE_BYTES;
const MIN_ENVELOPE = HEADER_BYTES + 12 + 16 + SIGNATURE_BYTES;

/** An epoch of the library key, with the key derived from it that seals messages. */
interface Epoch extends StoredKey {
  sealKey: Buffer;
  hex: string;
}

/** A message that opened: who signed it (a pinned member) and what it says. */
export interface Opened {
  signer: string;
  plaintext: Buffer;
  /** The box's nonce: a reply is bound to the request it answers through it. */
  nonce: Buffer;
  /** The key epoch it was sealed under (hex id): a reply goes under the same one. */
  keyId: string;
}

/** A library key sent to members: the epoch and, per recipient, the secret sealed to its key. */
export interface Rotation {
  keyId: string;
  epoch: number;
  recipients: string[];
  wrapped: Record<string, string>;
}

/** Everything a member knows about the library's membership, for another member. */
export interface MembershipExport {
  certificates: string[];
  removals: string[];
  keys: { keyId: string; epoch: number; recipients: string[] | null; wrapped: string }[];
}

/** Who wants to know when the membership changes. */
export interface TrustEvents {
  /** This device was removed from the library. */
  removedSelf(by: string): void;
  /** Another member was removed. */
  removed(device: string, by: string): void;
}

const b64 = (b: Uint8Array) => Buffer.from(b).toString('base64');
const unb64 = (s: string) => Buffer.from(s, 'base64');

/**
 * A library's trust state on one device (docs/design.md "Trust"): this device's key pairs, the
 * library key's epochs, and the member devices with their pinned keys. It seals what the device
 * puts on NATS and opens what it receives:
 *
 *   envelope = 'S' 1 | key id (8) | signer's certificate (168) | AES-256-GCM box | Ed25519 signature (64)
 *
 * The box is the payload under the epoch's seal key, with the context (the subject; for a reply,
 * the request's subject and nonce) and the header as associated data. The signature covers a
 * SHA-256 of context, header and box: once per message, not per row. A receiver opens a message
 * only when its signer is a member (pinned, or certified by a pinned member) that was not removed,
 * the signature verifies, and the epoch is known; anything else is a RejectedMessageError naming
 * the reason, dead-lettered by the caller.
 */
export class LibraryTrust {
  private readonly logger = new Logger('Trust');
  private readonly repo = new TrustRepository();
  private readonly epochs = new Map<string, Epoch>();
  private current!: Epoch;
  private readonly members = new Map<string, StoredMember>();
  private selfCertificate!: Certificate;
  private events: TrustEvents | null = null;

  private constructor(
    /** null: a trust kept in memory only (tools and tests speaking as a member). */
    private readonly db: Db | null,
    readonly libraryId: string,
    readonly deviceId: string,
    readonly keys: KeyPairs,
  ) {}

  /**
   * Loads the library's trust state from the database. The database must already hold a key
   * (see TrustSetup); this device's own certificate is made (self-signed) if missing.
   */
  static async load(db: Db, libraryId: string, deviceId: string): Promise<LibraryTrust> {
    const repo = new TrustRepository();
    const t = new LibraryTrust(db, libraryId, deviceId, await repo.identity(db));
    for (const k of await repo.keys(db)) t.addEpoch(k);
    if (t.epochs.size === 0) throw new Error(`no key for library ${libraryId} in this database`);
    for (const m of await repo.members(db)) t.members.set(m.certificate.device, m);
    let mine = t.members.get(deviceId);
    if (!mine || !mine.certificate.signPublic.equals(t.keys.signPublic)) {
      const cert = issueCertificate(libraryId, { device: deviceId, ...t.keys }, deviceId, t.keys.signPrivate);
      await repo.pin(db, cert);
      mine = { certificate: cert, removal: null };
      t.members.set(deviceId, mine);
    }
    t.selfCertificate = mine.certificate;
    return t;
  }

  /**
   * A member identity kept in memory only, holding the library key `secret` (epoch 0) and new key
   * pairs: what a tool (or a test) uses to speak to the library as a device of its own.
   */
  static inMemory(libraryId: string, deviceId: string, secret: Buffer, keys = generateKeyPairs()): LibraryTrust {
    const t = new LibraryTrust(null, libraryId, deviceId, keys);
    t.addEpoch({ keyId: keyIdOf(libraryId, secret), epoch: 0, secret, recipients: null });
    t.selfCertificate = issueCertificate(libraryId, { device: deviceId, ...keys }, deviceId, keys.signPrivate);
    t.members.set(deviceId, { certificate: t.selfCertificate, removal: null });
    return t;
  }

  onEvents(events: TrustEvents): void {
    this.events = events;
  }

  get fingerprint(): string {
    return fingerprint(this.keys.signPublic);
  }

  get removed(): boolean {
    return !!this.members.get(this.deviceId)?.removal;
  }

  get currentEpoch(): number {
    return this.current.epoch;
  }

  /** The id (hex) of the epoch sealing now. */
  get currentKeyId(): string {
    return this.current.hex;
  }

  /** Fingerprints of the members' signing keys, by device. */
  fingerprints(): Map<string, string> {
    return new Map([...this.members].map(([id, m]) => [id, fingerprint(m.certificate.signPublic)]));
  }

  isMember(device: string): boolean {
    const m = this.members.get(device);
    return !!m && !m.removal;
  }

  private addEpoch(k: StoredKey): Epoch {
    const hex = k.keyId.toString('hex');
    const existing = this.epochs.get(hex);
    if (existing) return existing;
    const e: Epoch = { ...k, hex, sealKey: sealKeyOf(this.libraryId, k.secret) };
    this.epochs.set(hex, e);
    if (!this.current || e.epoch > this.current.epoch || (e.epoch === this.current.epoch && hex > this.current.hex))
      this.current = e;
    return e;
  }

  // ---- sealing ---------------------------------------------------------------------------------

  /**
   * Seals under the current epoch, or under `keyId`'s when given and known: a reply goes under its
   * request's epoch, a rotation under the epoch it replaces (what its recipients hold).
   */
  seal(context: string, plaintext: Uint8Array, keyId?: string): { data: Buffer; nonce: Buffer } {
    const epoch = (keyId !== undefined && this.epochs.get(keyId)) || this.current;
    const header = Buffer.allocUnsafe(HEADER_BYTES);
    header[0] = MAGIC;
    header[1] = VERSION;
    epoch.keyId.copy(header, 2);
    this.selfCertificate.bytes.copy(header, 2 + KEY_ID_BYTES);
    const ctx = Buffer.from(context, 'utf8');
    const box = encrypt(epoch.sealKey, plaintext, Buffer.concat([ctx, header]));
    const signature = signDigest(this.keys.signPrivate, sha256(ctx, header, box));
    return { data: Buffer.concat([header, box, signature]), nonce: box.subarray(0, 12) };
  }

  /** Opens a sealed message received under `context`, or throws a RejectedMessageError. */
  open(context: string, raw: Uint8Array): Opened {
    if (raw.length < MIN_ENVELOPE || raw[0] !== MAGIC)
      throw new RejectedMessageError('not_sealed', 'not a sealed message');
    if (raw[1] !== VERSION) throw new RejectedMessageError('not_sealed', `unknown envelope version ${raw[1]}`);
    const data = Buffer.from(raw.buffer, raw.byteOffset, raw.byteLength);
    const header = data.subarray(0, HEADER_BYTES);
    const keyHex = data.subarray(2, 2 + KEY_ID_BYTES).toString('hex');
    const cert = parseCertificate(data.subarray(2 + KEY_ID_BYTES, HEADER_BYTES))!;
    const signer = cert.device;
    const member = this.members.get(signer);
    let pin: Certificate | null = null;
    if (member) {
      if (member.removal)
        throw new RejectedMessageError('removed_signer', `device ${signer} was removed from the library`);
      if (!member.certificate.signPublic.equals(cert.signPublic))
        throw new RejectedMessageError('bad_signature', `device ${signer} signs with another key than the pinned one`);
    } else {
      if (!this.certificateValid(cert, keyHex))
        throw new RejectedMessageError('unknown_signer', `device ${signer} is not a member of the library`);
      pin = cert;
    }
    const box = data.subarray(HEADER_BYTES, data.length - SIGNATURE_BYTES);
    const ctx = Buffer.from(context, 'utf8');
    if (!verifyDigest(cert.signPublic, sha256(ctx, header, box), data.subarray(data.length - SIGNATURE_BYTES)))
      throw new RejectedMessageError('bad_signature', `the signature of device ${signer} does not verify`);
    const epoch = this.epochs.get(keyHex);
    if (!epoch) throw new UnknownEpochError(signer, keyHex);
    const plaintext = decrypt(epoch.sealKey, box, Buffer.concat([ctx, header]));
    if (!plaintext) throw new RejectedMessageError('undecryptable', `a message of device ${signer} does not decrypt`);
    if (pin) this.pinLater(pin);
    return { signer, plaintext, nonce: Buffer.from(box.subarray(0, 12)), keyId: keyHex };
  }

  /**
   * A certificate of a device we have not pinned: signed by a member we know, or self-signed under
   * the founding key while no rotation happened (the pre-shared LIBRARY_KEY mode: whoever holds
   * the key is a member, until the first removal rotates it).
   */
  private certificateValid(cert: Certificate, keyHex: string | null): boolean {
    if (cert.addedBy === cert.device) {
      if (keyHex === null) return false;
      const e = this.epochs.get(keyHex);
      return (
        !!e && e.epoch === 0 && this.current.epoch === 0 && certificateSignedBy(this.libraryId, cert, cert.signPublic)
      );
    }
    const adder = this.members.get(cert.addedBy);
    return !!adder && !adder.removal && certificateSignedBy(this.libraryId, cert, adder.certificate.signPublic);
  }

  private pinLater(cert: Certificate): void {
    if (this.members.has(cert.device)) return;
    this.members.set(cert.device, { certificate: cert, removal: null });
    this.logger.log(`pinned the key of member ${cert.device} (${fingerprint(cert.signPublic)})`);
    if (this.db)
      this.repo
        .pin(this.db, cert)
        .catch((e) => this.logger.warn(`cannot store member ${cert.device}: ${(e as Error).message}`));
  }

  // ---- membership ------------------------------------------------------------------------------

  /** Certifies a device joining by invite: its certificate, signed by this device. */
  certify(member: { device: string; signPublic: Uint8Array; boxPublic: Uint8Array }): Certificate {
    return issueCertificate(this.libraryId, member, this.deviceId, this.keys.signPrivate);
  }

  async pinNow(db: DbOrTx | null, cert: Certificate): Promise<void> {
    if (db) await this.repo.pin(db, cert);
    if (!this.members.has(cert.device)) this.members.set(cert.device, { certificate: cert, removal: null });
  }

  /**
   * Removes a member here: records the signed removal and rotates the library key to a new epoch
   * sent to every remaining member. Returns what to announce.
   */
  async removeMember(device: string): Promise<{ removal: Removal; rotation: Rotation }> {
    const removal = issueRemoval(this.libraryId, device, this.deviceId, this.keys.signPrivate);
    await this.applyRemoval(removal);
    return { removal, rotation: await this.rotate() };
  }

  /** This device's removal of itself, signed by it: what it announces when it leaves the library. */
  departure(): Removal {
    return issueRemoval(this.libraryId, this.deviceId, this.deviceId, this.keys.signPrivate);
  }

  /** A new epoch of the library key, sealed to each remaining member's X25519 key. */
  async rotate(): Promise<Rotation> {
    const secret = randomBytes(32);
    const keyId = keyIdOf(this.libraryId, secret);
    const recipients = [...this.members.values()].filter((m) => !m.removal).map((m) => m.certificate.device);
    const epoch = this.current.epoch + 1;
    const wrapped: Record<string, string> = {};
    for (const id of recipients) {
      wrapped[id] = b64(wrapTo(this.members.get(id)!.certificate.boxPublic, secret, this.wrapContext(keyId)));
    }
    const key = { keyId, epoch, secret, recipients };
    if (this.db) await this.repo.addKey(this.db, key, this.deviceId);
    this.addEpoch(key);
    this.logger.log(`library key rotated to epoch ${epoch} for ${recipients.length} members`);
    return { keyId: keyId.toString('hex'), epoch, recipients, wrapped };
  }

  private wrapContext(keyId: Uint8Array): string {
    return `sync-key-v1|${this.libraryId}|${Buffer.from(keyId).toString('hex')}`;
  }

  /** Takes a rotation a member announced: stores the new epoch when it was sealed to us. */
  async acceptRotation(rotation: Rotation, from: string): Promise<boolean> {
    if (this.epochs.has(rotation.keyId)) return true;
    const mine = rotation.wrapped[this.deviceId];
    if (!mine) return false;
    return this.storeWrapped(
      { keyId: rotation.keyId, epoch: rotation.epoch, recipients: rotation.recipients, wrapped: mine },
      from,
    );
  }

  private async storeWrapped(
    k: { keyId: string; epoch: number; recipients: string[] | null; wrapped: string },
    from: string,
  ): Promise<boolean> {
    if (this.epochs.has(k.keyId)) return true;
    const keyId = Buffer.from(k.keyId, 'hex');
    const secret = unwrap(this.keys.boxPrivate, this.keys.boxPublic, unb64(k.wrapped), this.wrapContext(keyId));
    if (!secret || !keyIdOf(this.libraryId, secret).equals(keyId)) {
      this.logger.warn(`a library key from ${from} does not open or does not match its id`);
      return false;
    }
    const key = { keyId, epoch: k.epoch, secret, recipients: k.recipients };
    if (this.db) await this.repo.addKey(this.db, key, from);
    this.addEpoch(key);
    this.logger.log(`received the library key of epoch ${k.epoch} from ${from}`);
    return true;
  }

  /**
   * Records a removal signed by a member. Returns true when it was new. A device removed keeps its
   * removal for good: its messages are refused from then on.
   */
  async applyRemoval(removal: Removal): Promise<boolean> {
    const member = this.members.get(removal.device);
    if (member?.removal) return false;
    const remover = this.members.get(removal.removedBy);
    if (!remover || !removalSignedBy(this.libraryId, removal, remover.certificate.signPublic))
      throw new RejectedMessageError('bad_signature', `a removal of ${removal.device} not signed by a member`);
    if (!member) return false; // a device we never knew: nothing of it can open here anyway
    if (this.db) await this.repo.remove(this.db, removal);
    this.members.set(removal.device, { ...member, removal });
    if (removal.device === this.deviceId) this.events?.removedSelf(removal.removedBy);
    else this.events?.removed(removal.device, removal.removedBy);
    return true;
  }

  /** The current epoch was sent to a device that is removed now (concurrent rotations): rotate again. */
  get currentKeyReachesRemoved(): boolean {
    const r = this.current.recipients;
    if (r === null) return [...this.members.values()].some((m) => m.removal);
    return r.some((id) => this.members.get(id)?.removal);
  }

  /** A short hash of the membership and key epochs known here: peers compare it in heartbeats. */
  digest(): string {
    const parts = [...this.members.values()]
      .map((m) => b64(m.certificate.bytes) + (m.removal ? `/${b64(m.removal.bytes)}` : ''))
      .sort();
    parts.push(...[...this.epochs.keys()].sort());
    return sha256(Buffer.from(parts.join(','), 'utf8'))
      .subarray(0, 12)
      .toString('hex');
  }

  /** What this device knows, for the member `to` (its keys sealed to it); refused to non-members. */
  exportFor(to: string): MembershipExport {
    const member = this.members.get(to);
    if (!member || member.removal) throw new RejectedMessageError('removed_signer', `device ${to} is not a member`);
    const box = member.certificate.boxPublic;
    return {
      certificates: [...this.members.values()].map((m) => b64(m.certificate.bytes)),
      removals: [...this.members.values()].filter((m) => m.removal).map((m) => b64(m.removal!.bytes)),
      keys: [...this.epochs.values()].map((e) => ({
        keyId: e.hex,
        epoch: e.epoch,
        recipients: e.recipients,
        wrapped: b64(wrapTo(box, e.secret, this.wrapContext(e.keyId))),
      })),
    };
  }

  /**
   * Merges what a member sent: certificates (signed by a member we know, or vouched for by the
   * sender), removals signed by members, and keys sealed to us. A union: repeated imports converge.
   */
  async importFrom(from: string, m: MembershipExport): Promise<void> {
    const pending = m.certificates.map((c) => parseCertificate(unb64(c))).filter((c): c is Certificate => !!c);
    for (let progress = true; progress && pending.length;) {
      progress = false;
      for (let i = pending.length - 1; i >= 0; i--) {
        const c = pending[i];
        const known = this.members.get(c.device);
        if (known) {
          pending.splice(i, 1);
          continue;
        }
        const adder = this.members.get(c.addedBy);
        const ok =
          c.addedBy === c.device
            ? certificateSignedBy(this.libraryId, c, c.signPublic)
            : !!adder && certificateSignedBy(this.libraryId, c, adder.certificate.signPublic);
        if (ok) {
          await this.pinNow(this.db, c);
          pending.splice(i, 1);
          progress = true;
        }
      }
    }
    for (const r of m.removals) {
      const removal = parseRemoval(unb64(r));
      if (!removal) continue;
      try {
        await this.applyRemoval(removal);
      } catch (e) {
        this.logger.warn(`a removal from ${from} was refused: ${(e as Error).message}`);
      }
    }
    for (const k of m.keys) await this.storeWrapped(k, from);
  }

  /** Stores a library key given in the clear by the setup (LIBRARY_KEY, founding, an invite). */
  static async storeKey(db: DbOrTx, libraryId: string, secret: Buffer, epoch = 0, recipients: string[] | null = null) {
    await new TrustRepository().addKey(db, { keyId: keyIdOf(libraryId, secret), epoch, secret, recipients }, null);
  }
}

/** A genuine member's message under a key epoch this device does not have (yet). */
export class UnknownEpochError extends RejectedMessageError {
  constructor(
    readonly signer: string,
    readonly keyId: string,
  ) {
    super('unknown_epoch', `device ${signer} sealed a message under key epoch ${keyId}, unknown here`);
  }
}
