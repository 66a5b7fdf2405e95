import type { KeyObject } from 'node:crypto';
import { sha256, signDigest, uuidBytes, uuidText, verifyDigest } from './crypto';

/**
 * Signed membership records, fixed binary layouts (they travel in every envelope and in member
 * lists). A certificate says "device D with these public keys is a member, added by A at T",
 * signed by A (A = D for a device that joined with the pre-shared key or founded the library). A
 * removal says "device D was removed by R at T", signed by R.
 */
export const CERTIFICATE_BYTES = 16 + 32 + 32 + 16 + 8 + 64;
export const REMOVAL_BYTES = 16 + 16 + 8 + 64;

export interface Certificate {
  device: string;
  signPublic: Buffer;
  boxPublic: Buffer;
  addedBy: string;
  addedAt: Date;
  bytes: Buffer;
}

export interface Removal {
  device: string;
  removedBy: string;
  removedAt: Date;
  bytes: Buffer;
}

function digest(purpose: string, libraryId: string, body: Uint8Array): Buffer {
  return sha256(Buffer.from(purpose, 'utf8'), uuidBytes(libraryId), body);
}

function time(b: Buffer, at: number): Date {
  return new Date(Number(b.readBigUInt64BE(at)));
}

export function issueCertificate(
  libraryId: string,
  member: { device: string; signPublic: Uint8Array; boxPublic: Uint8Array },
  addedBy: string,
  signer: KeyObject,
  addedAt = new Date(),
): Certificate {
  const at = Buffer.alloc(8);
  at.writeBigUInt64BE(BigInt(addedAt.getTime()));
  const body = Buffer.concat([uuidBytes(member.device), member.signPublic, member.boxPublic, uuidBytes(addedBy), at]);
  const bytes = Buffer.concat([body, signDigest(signer, digest('sync-member-v1', libraryId, body))]);
  return parseCertificate(bytes)!;
}

export function parseCertificate(raw: Uint8Array): Certificate | null {
  if (raw.length !== CERTIFICATE_BYTES) return null;
  const b = Buffer.from(raw);
  return {
    device: uuidText(b.subarray(0, 16)),
    signPublic: b.subarray(16, 48),
    boxPublic: b.subarray(48, 80),
    addedBy: uuidText(b.subarray(80, 96)),
    addedAt: time(b, 96),
    bytes: b,
  };
}

/** Whether the certificate's signature verifies against the adder's signing key. */
export function certificateSignedBy(libraryId: string, cert: Certificate, adderSignPublic: Uint8Array): boolean {
  const body = cert.bytes.subarray(0, CERTIFICATE_BYTES - 64);
  return verifyDigest(adderSignPublic, digest('sync-member-v1', libraryId, body), cert.bytes.subarray(body.length));
}

export function issueRemoval(libraryId: string, device: string, removedBy: string, signer: KeyObject): Removal {
  const at = Buffer.alloc(8);
  at.writeBigUInt64BE(BigInt(Date.now()));
  const body = Buffer.concat([uuidBytes(device), uuidBytes(removedBy), at]);
  return parseRemoval(Buffer.concat([body, signDigest(signer, digest('sync-removal-v1', libraryId, body))]))!;
}

export function parseRemoval(raw: Uint8Array): Removal | null {
  if (raw.length !== REMOVAL_BYTES) return null;
  const b = Buffer.from(raw);
  return {
    device: uuidText(b.subarray(0, 16)),
    removedBy: uuidText(b.subarray(16, 32)),
    removedAt: time(b, 32),
    bytes: b,
  };
}

export function removalSignedBy(libraryId: string, removal: Removal, signPublic: Uint8Array): boolean {
  const body = removal.bytes.subarray(0, REMOVAL_BYTES - 64);
  return verifyDigest(signPublic, digest('sync-removal-v1', libraryId, body), removal.bytes.subarray(body.length));
}
