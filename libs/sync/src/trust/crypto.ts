import {
  createCipheriv,
  createDecipheriv,
  createHash,
  createPrivateKey,
  createPublicKey,
  diffieHellman,
  generateKeyPairSync,
  hkdfSync,
  KeyObject,
  randomBytes,
  sign,
  verify,
} from 'node:crypto';

/**
 * The primitives of the trust model, all from node:crypto (docs/design.md "Trust"): Ed25519
 * signatures, X25519 key agreement, AES-256-GCM, HKDF-SHA256 with one derived key per purpose.
 * Nothing here is hand-made; this file only fixes byte layouts.
 */

export const KEY_ID_BYTES = 8;
const NONCE_BYTES = 12;
const TAG_BYTES = 16;
export const SIGNATURE_BYTES = 64;

/** Derives a 32-byte key for one purpose from a secret. */
export function derive(secret: Uint8Array, salt: string, purpose: string, length = 32): Buffer {
  return Buffer.from(hkdfSync('sha256', secret, Buffer.from(salt, 'utf8'), Buffer.from(purpose, 'utf8'), length));
}

export function sha256(...parts: Uint8Array[]): Buffer {
  const h = createHash('sha256');
  for (const p of parts) h.update(p);
  return h.digest();
}

/** uuid text <-> its 16 bytes. */
export function uuidBytes(id: string): Buffer {
  return Buffer.from(id.replace(/-/g, ''), 'hex');
}
export function uuidText(b: Uint8Array): string {
  const h = Buffer.from(b).toString('hex');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

/** A device's key pairs: Ed25519 signs what it sends, X25519 receives library keys. */
export interface KeyPairs {
  signPrivate: KeyObject;
  signPublic: Buffer;
  boxPrivate: KeyObject;
  boxPublic: Buffer;
}

export function generateKeyPairs(): KeyPairs {
  const s = generateKeyPairSync('ed25519');
  const b = generateKeyPairSync('x25519');
  return {
    signPrivate: s.privateKey,
    signPublic: rawPublic(s.publicKey),
    boxPrivate: b.privateKey,
    boxPublic: rawPublic(b.publicKey),
  };
}

export function rawPublic(k: KeyObject): Buffer {
  return Buffer.from(k.export({ format: 'jwk' }).x as string, 'base64url');
}
export function privateDer(k: KeyObject): Buffer {
  return k.export({ format: 'der', type: 'pkcs8' });
}
export function privateFromDer(der: Uint8Array): KeyObject {
  return createPrivateKey({ key: Buffer.from(der), format: 'der', type: 'pkcs8' });
}

const publicKeys = new Map<string, KeyObject>();
/** A public key object from its 32 raw bytes (cached: verifying is hot). */
export function publicKey(raw: Uint8Array, curve: 'Ed25519' | 'X25519'): KeyObject {
  const x = Buffer.from(raw).toString('base64url');
  const cacheKey = `${curve}:${x}`;
  let k = publicKeys.get(cacheKey);
  if (!k) {
    k = createPublicKey({ key: { kty: 'OKP', crv: curve, x }, format: 'jwk' });
    if (publicKeys.size > 10_000) publicKeys.clear();
    publicKeys.set(cacheKey, k);
  }
  return k;
}

/** A short, stable name of a signing key, for people comparing devices. */
export function fingerprint(signPublic: Uint8Array): string {
  return sha256(signPublic)
    .subarray(0, 16)
    .toString('hex')
    .replace(/(.{4})(?!$)/g, '$1:');
}

export function signDigest(key: KeyObject, digest: Uint8Array): Buffer {
  return sign(null, digest, key);
}
export function verifyDigest(signPublic: Uint8Array, digest: Uint8Array, signature: Uint8Array): boolean {
  try {
    return verify(null, digest, publicKey(signPublic, 'Ed25519'), signature);
  } catch {
    return false;
  }
}

/** AES-256-GCM: nonce (12) | ciphertext | tag (16). */
export function encrypt(
  key: Uint8Array,
  plaintext: Uint8Array,
  aad: Uint8Array,
  nonce = randomBytes(NONCE_BYTES),
): Buffer {
  const c = createCipheriv('aes-256-gcm', key, nonce);
  c.setAAD(aad);
  return Buffer.concat([nonce, c.update(plaintext), c.final(), c.getAuthTag()]);
}
/** The plaintext, or null when the box does not open (wrong key, changed bytes). */
export function decrypt(key: Uint8Array, box: Uint8Array, aad: Uint8Array): Buffer | null {
  if (box.length < NONCE_BYTES + TAG_BYTES) return null;
  const b = Buffer.from(box.buffer, box.byteOffset, box.byteLength);
  try {
    const d = createDecipheriv('aes-256-gcm', key, b.subarray(0, NONCE_BYTES));
    d.setAAD(aad);
    d.setAuthTag(b.subarray(b.length - TAG_BYTES));
    return Buffer.concat([d.update(b.subarray(NONCE_BYTES, b.length - TAG_BYTES)), d.final()]);
  } catch {
    return null;
  }
}

/**
 * A secret sealed to one device's X25519 key: an ephemeral key pair, the shared secret through
 * HKDF, then AES-GCM. Layout: ephemeral public (32) | box. `context` is bound in (AAD).
 */
export function wrapTo(recipientBoxPublic: Uint8Array, secret: Uint8Array, context: string): Buffer {
  const eph = generateKeyPairSync('x25519');
  const ephPublic = rawPublic(eph.publicKey);
  const shared = diffieHellman({ privateKey: eph.privateKey, publicKey: publicKey(recipientBoxPublic, 'X25519') });
  const key = derive(shared, Buffer.concat([ephPublic, recipientBoxPublic]).toString('hex'), 'sync-wrap-v1');
  return Buffer.concat([ephPublic, encrypt(key, secret, Buffer.from(context, 'utf8'))]);
}
export function unwrap(
  boxPrivate: KeyObject,
  boxPublic: Uint8Array,
  wrapped: Uint8Array,
  context: string,
): Buffer | null {
  if (wrapped.length < 32 + NONCE_BYTES + TAG_BYTES) return null;
  const ephPublic = Buffer.from(wrapped.subarray(0, 32));
  try {
    const shared = diffieHellman({ privateKey: boxPrivate, publicKey: publicKey(ephPublic, 'X25519') });
    const key = derive(shared, Buffer.concat([ephPublic, boxPublic]).toString('hex'), 'sync-wrap-v1');
    return decrypt(key, wrapped.subarray(32), Buffer.from(context, 'utf8'));
  } catch {
    return null;
  }
}

/** The id of a library key epoch: derived from the key, so devices sharing a key agree on it. */
export function keyIdOf(libraryId: string, secret: Uint8Array): Buffer {
  return derive(secret, libraryId, 'sync-key-id-v1', KEY_ID_BYTES);
}
/** The key that seals messages under one epoch. */
export function sealKeyOf(libraryId: string, secret: Uint8Array): Buffer {
  return derive(secret, libraryId, 'sync-seal-v1');
}
