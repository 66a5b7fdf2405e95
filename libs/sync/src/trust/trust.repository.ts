import type { DbOrTx } from '@lib/db';
import { generateKeyPairs, KeyPairs, privateDer, privateFromDer } from './crypto';
import type { Certificate, Removal } from './certificates';
import { parseCertificate, parseRemoval } from './certificates';

export interface StoredKey {
  keyId: Buffer;
  epoch: number;
  secret: Buffer;
  recipients: string[] | null;
}

export interface StoredMember {
  certificate: Certificate;
  removal: Removal | null;
}

const buf = (b: Uint8Array): Buffer => Buffer.from(b);

/** The trust tables: this device's key pairs, the library's key epochs, members and invites. */
export class TrustRepository {
  /** This device's key pairs, created (and stored) on first use. */
  async identity(db: DbOrTx): Promise<KeyPairs> {
    const row = await db.selectFrom('device_keys').selectAll().executeTakeFirst();
    if (row) {
      return {
        signPrivate: privateFromDer(row.sign_private),
        signPublic: buf(row.sign_public),
        boxPrivate: privateFromDer(row.box_private),
        boxPublic: buf(row.box_public),
      };
    }
    const k = generateKeyPairs();
    await db
      .insertInto('device_keys')
      .values({
        sign_private: privateDer(k.signPrivate),
        sign_public: k.signPublic,
        box_private: privateDer(k.boxPrivate),
        box_public: k.boxPublic,
      })
      .onConflict((oc) => oc.doNothing())
      .execute();
    // two processes racing on one new database: both read the one row that won
    return this.identity(db);
  }

  async keys(db: DbOrTx): Promise<StoredKey[]> {
    const rows = await db.selectFrom('library_keys').selectAll().orderBy('epoch').execute();
    return rows.map((r) => ({ keyId: buf(r.key_id), epoch: r.epoch, secret: buf(r.secret), recipients: r.recipients }));
  }

  async addKey(db: DbOrTx, key: StoredKey, createdBy: string | null): Promise<void> {
    await db
      .insertInto('library_keys')
      .values({
        key_id: key.keyId,
        epoch: key.epoch,
        secret: key.secret,
        recipients: key.recipients,
        created_by: createdBy,
      })
      .onConflict((oc) => oc.column('key_id').doNothing())
      .execute();
  }

  async members(db: DbOrTx): Promise<StoredMember[]> {
    const rows = await db.selectFrom('library_members').select(['certificate', 'removal']).execute();
    return rows.map((r) => ({
      certificate: parseCertificate(buf(r.certificate))!,
      removal: r.removal ? parseRemoval(buf(r.removal)) : null,
    }));
  }

  async pin(db: DbOrTx, c: Certificate): Promise<void> {
    await db
      .insertInto('library_members')
      .values({
        device_id: c.device,
        sign_public: c.signPublic,
        box_public: c.boxPublic,
        added_by: c.addedBy,
        added_at: c.addedAt,
        certificate: c.bytes,
      })
      .onConflict((oc) => oc.column('device_id').doNothing())
      .execute();
  }

  async remove(db: DbOrTx, r: Removal): Promise<void> {
    await db
      .updateTable('library_members')
      .set({ removed_at: r.removedAt, removed_by: r.removedBy, removal: r.bytes })
      .where('device_id', '=', r.device)
      .where('removal', 'is', null)
      .execute();
  }

  async addInvite(db: DbOrTx, invite: { id: Buffer; secret: Buffer; expiresAt: Date }): Promise<void> {
    await db
      .insertInto('invites')
      .values({ id: invite.id, secret: invite.secret, expires_at: invite.expiresAt })
      .execute();
  }

  async invite(db: DbOrTx, id: Buffer) {
    return db.selectFrom('invites').selectAll().where('id', '=', id).executeTakeFirst();
  }

  /**
   * Uses the invite for `device`: true when it was unused (or already used by this same device,
   * whose first reply may have been lost) and is not expired. One statement: two joiners racing
   * for one invite cannot both win.
   */
  async useInvite(db: DbOrTx, id: Buffer, device: string): Promise<boolean> {
    const r = await db
      .updateTable('invites')
      .set({ used_by: device, used_at: new Date() })
      .where('id', '=', id)
      .where('expires_at', '>', new Date())
      .where((eb) => eb.or([eb('used_by', 'is', null), eb('used_by', '=', device)]))
      .executeTakeFirst();
    return Number(r.numUpdatedRows) === 1;
  }
}
