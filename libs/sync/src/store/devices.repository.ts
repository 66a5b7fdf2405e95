import { randomUUID } from 'node:crypto';
import { sql } from 'kysely';
import type { Db, DbOrTx, DevicesTable } from '@lib/db';
import type { Selectable } from 'kysely';
import { LocalStateRepository } from './local-state.repository';

export type DeviceRow = Selectable<DevicesTable>;

/** Advisory lock key that serializes resolveSelf across processes sharing a database. */
const RESOLVE_SELF_LOCK = 0x5e1f1d;

/** Sorts above every clock stamp. */
export const ALL_ACKNOWLEDGED = '~';

export class IdentityError extends Error {
  constructor(
    readonly variable: 'DEVICE_ID' | 'LIBRARY_ID',
    detail: string,
  ) {
    super(`${variable}: ${detail}`);
    this.name = 'IdentityError';
  }
}

/** The devices table: this device and its peers, the source of truth for who is in the library. */
export class DevicesRepository {
  private readonly localState = new LocalStateRepository();

  /**
   * This device's id: the configured one, else the one persisted in its database, else a new one
   * (persisted). A database belongs to one device of one library for its whole life.
   */
  async resolveSelf(db: Db, opts: { configuredId: string | null; name: string; libraryId: string }): Promise<string> {
    return db.transaction().execute(async (tx) => {
      // two processes starting on one new database would each pick an id (FOR UPDATE locks no row
      // that does not exist yet): the second one waits here and then reads the first one's choice
      await sql`select pg_advisory_xact_lock(${sql.lit(RESOLVE_SELF_LOCK)})`.execute(tx);
      const stored = await this.localState.getForUpdate(tx, ['device_id', 'library_id']);
      const storedId = stored.device_id ?? null;
      const storedLibrary = stored.library_id ?? null;
      if (storedLibrary && storedLibrary !== opts.libraryId) {
        throw new IdentityError(
          'LIBRARY_ID',
          `this database belongs to library ${storedLibrary}, not ${opts.libraryId}`,
        );
      }
      if (storedId && opts.configuredId && storedId !== opts.configuredId) {
        throw new IdentityError('DEVICE_ID', `this database belongs to device ${storedId}, not ${opts.configuredId}`);
      }
      const id = storedId ?? opts.configuredId ?? randomUUID();
      await this.localState.setMissing(tx, { device_id: id, library_id: opts.libraryId });
      await tx
        .insertInto('devices')
        .values({ id, name: opts.name, library_id: opts.libraryId, is_self: true, online: true })
        .onConflict((oc) =>
          oc.column('id').doUpdateSet({ name: opts.name, is_self: true, online: true, removed_at: null }),
        )
        .execute();
      return id;
    });
  }

  /**
   * The device's own id, from its root database: the stored one, else DEVICE_ID, else a new one
   * (kept). A DEVICE_ID that differs from the stored id is refused.
   */
  async resolveDevice(db: Db, configuredId: string | null): Promise<string> {
    return db.transaction().execute(async (tx) => {
      await sql`select pg_advisory_xact_lock(${sql.lit(RESOLVE_SELF_LOCK)})`.execute(tx);
      const stored = (await this.localState.getForUpdate(tx, ['device_id'])).device_id ?? null;
      if (stored && configuredId && stored !== configuredId)
        throw new IdentityError('DEVICE_ID', `this database belongs to device ${stored}, not ${configuredId}`);
      const id = stored ?? configuredId ?? randomUUID();
      await this.localState.setMissing(tx, { device_id: id });
      return id;
    });
  }

  /** The library this database belongs to (null for a new database). */
  storedLibrary(db: DbOrTx): Promise<string | null> {
    return this.localState.get(db, 'library_id');
  }

  /** Records a peer we heard of (a hello, a heartbeat, a change); never resurrects a removed one by itself. */
  async upsertPeer(db: DbOrTx, peer: { id: string; name: string; libraryId: string }): Promise<void> {
    this.watermarksMoved++;
    await db
      .insertInto('devices')
      .values({ id: peer.id, name: peer.name, library_id: peer.libraryId, is_self: false, online: false })
      .onConflict((oc) => oc.column('id').doUpdateSet({ name: peer.name }).where('devices.is_self', '=', false))
      .execute();
  }

  /** Makes sure a device we received changes from is known, without knowing its name yet. */
  async ensurePeer(db: DbOrTx, id: string): Promise<void> {
    this.watermarksMoved++;
    // the library is ours (the self row's): migration apply_functions
    await sql`select sync_ensure_peer(${id}::uuid)`.execute(db);
  }

  async list(db: DbOrTx): Promise<DeviceRow[]> {
    return db.selectFrom('devices').selectAll().orderBy('id').execute();
  }

  async peers(db: DbOrTx): Promise<DeviceRow[]> {
    return db.selectFrom('devices').selectAll().where('is_self', '=', false).orderBy('id').execute();
  }

  /**
   * Counts the calls that may move what `watermarks` returns (peers added or removed, watermarks
   * raised), so that a reader can tell it is still current (PresenceService).
   */
  watermarksMoved = 0;
  /**
   * Per owner, the highest horizon up to which this process collected tombstones: a device that
   * joins afterwards (no watermark yet) lowers the horizon, not what was rightly collected before.
   */
  private readonly collectedUpTo = new Map<string, string>();

  /** Remembers the horizons a collection used (Pruner). */
  noteCollected(horizons: Map<string, string>): void {
    for (const [owner, cursor] of horizons) {
      const held = this.collectedUpTo.get(owner);
      if (!held || held < cursor) this.collectedUpTo.set(owner, cursor);
    }
  }

  /** How far we have applied each peer's streams: owner → state cursor, origin → shared stamp. */
  async watermarks(db: DbOrTx): Promise<{ state: Record<string, string>; shared: Record<string, string> }> {
    const state: Record<string, string> = {};
    const shared: Record<string, string> = {};
    for (const p of await this.peers(db)) {
      if (p.state_watermark) state[p.id] = p.state_watermark;
      if (p.shared_watermark) shared[p.id] = p.shared_watermark;
    }
    return { state, shared };
  }

  async get(db: DbOrTx, id: string): Promise<DeviceRow | undefined> {
    return db.selectFrom('devices').selectAll().where('id', '=', id).executeTakeFirst();
  }

  /** Raises a peer's state watermark (our applied position in its owned stream); never lowers it. */
  async raiseStateWatermark(db: DbOrTx, id: string, cursor: string): Promise<void> {
    this.watermarksMoved++;
    await sql`update devices set state_watermark = ${cursor} where id = ${id} and (state_watermark is null or state_watermark < ${cursor})`.execute(
      db,
    );
  }

  async raiseSharedWatermark(db: DbOrTx, id: string, hlc: string): Promise<void> {
    this.watermarksMoved++;
    await sql`update devices set shared_watermark = ${hlc} where id = ${id} and (shared_watermark is null or shared_watermark < ${hlc})`.execute(
      db,
    );
  }

  /** Records how far a peer has applied our streams (from its heartbeat or ack). */
  async recordAcks(db: DbOrTx, id: string, acks: { shared?: string | null; state?: string | null }): Promise<void> {
    if (acks.shared) {
      await sql`update devices set acked_shared = ${acks.shared} where id = ${id} and (acked_shared is null or acked_shared < ${acks.shared})`.execute(
        db,
      );
    }
    if (acks.state) {
      await sql`update devices set acked_state = ${acks.state} where id = ${id} and (acked_state is null or acked_state < ${acks.state})`.execute(
        db,
      );
    }
  }

  /** Stores what a peer reported of every origin's streams (drives tombstone collection). */
  async recordPeerWatermarks(
    db: DbOrTx,
    peer: string,
    state: Record<string, string>,
    shared: Record<string, string>,
  ): Promise<void> {
    const origins = new Set([...Object.keys(state), ...Object.keys(shared)]);
    if (origins.size === 0) return;
    await db
      .insertInto('peer_watermarks')
      .values(
        [...origins].map((o) => ({
          peer_id: peer,
          origin_id: o,
          state_watermark: state[o] ?? null,
          shared_watermark: shared[o] ?? null,
          updated_at: new Date(),
        })),
      )
      .onConflict((oc) =>
        oc.columns(['peer_id', 'origin_id']).doUpdateSet((eb) => ({
          state_watermark: eb.ref('excluded.state_watermark'),
          shared_watermark: eb.ref('excluded.shared_watermark'),
          updated_at: eb.ref('excluded.updated_at'),
        })),
      )
      .execute();
  }

  /**
   * For each owner whose tombstones we hold: the smallest state watermark that every active
   * device other than the owner has reported for it. Owners some device never reported are absent
   * (their tombstones stay): a device offline for a month holds collection back.
   */
  async tombstoneHorizons(db: DbOrTx): Promise<Map<string, string>> {
    const active = await db
      .selectFrom('devices')
      .select(['id', 'is_self', 'state_watermark'])
      .where('removed_at', 'is', null)
      .execute();
    const owners = await db.selectFrom('owned_tombstones').select('device_id').distinct().execute();
    const reported = await db
      .selectFrom('peer_watermarks')
      .select(['peer_id', 'origin_id', 'state_watermark'])
      .execute();
    const out = new Map<string, string>();
    for (const { device_id: owner } of owners) {
      const min = horizonOf(owner, active, reported);
      if (min) out.set(owner, min);
    }
    return out;
  }

  /**
   * One owner's tombstone horizon (as in tombstoneHorizons), whether or not we hold any of its
   * tombstones, or the highest one a collection of this process used if that is higher: what lies
   * at or below it, this device collects (or has collected).
   */
  async tombstoneHorizon(db: DbOrTx, owner: string): Promise<string | null> {
    const active = await db
      .selectFrom('devices')
      .select(['id', 'is_self', 'state_watermark'])
      .where('removed_at', 'is', null)
      .execute();
    const reported = await db
      .selectFrom('peer_watermarks')
      .select(['peer_id', 'origin_id', 'state_watermark'])
      .where('origin_id', '=', owner)
      .execute();
    const now = horizonOf(owner, active, reported);
    const before = this.collectedUpTo.get(owner) ?? null;
    return now === null || (before !== null && before > now) ? before : now;
  }

  /** Takes a device out of the library: it no longer counts for pruning or tombstone collection. */
  async markRemoved(db: DbOrTx, id: string): Promise<boolean> {
    this.watermarksMoved++;
    const res = await db
      .updateTable('devices')
      .set({ removed_at: new Date(), online: false })
      .where('id', '=', id)
      .where('is_self', '=', false)
      .where('removed_at', 'is', null)
      .executeTakeFirst();
    return Number(res.numUpdatedRows ?? 0) > 0;
  }

  async removed(db: DbOrTx): Promise<string[]> {
    return (await db.selectFrom('devices').select('id').where('removed_at', 'is not', null).execute()).map((r) => r.id);
  }

  async markAllPeersOffline(db: DbOrTx): Promise<void> {
    await db.updateTable('devices').set({ online: false }).where('is_self', '=', false).execute();
  }

  async markSeen(db: DbOrTx, id: string, at: Date): Promise<void> {
    await db.updateTable('devices').set({ online: true, last_seen_at: at }).where('id', '=', id).execute();
  }

  /** Marks peers not heard from since `before` offline; returns their ids. */
  async markStaleOffline(db: DbOrTx, before: Date): Promise<string[]> {
    const rows = await db
      .updateTable('devices')
      .set({ online: false })
      .where('is_self', '=', false)
      .where('online', '=', true)
      .where((eb) => eb.or([eb('last_seen_at', '<', before), eb('last_seen_at', 'is', null)]))
      .returning('id')
      .execute();
    return rows.map((r) => r.id);
  }

  /**
   * The shared change-log position every active peer has acknowledged: null while any active peer
   * has never acknowledged (it holds pruning back); removed devices do not count. With no peer
   * at all everything published may go: a device that joins later is backfilled from state.
   */
  async minimumSharedAck(db: DbOrTx): Promise<string | null> {
    const peers = await db
      .selectFrom('devices')
      .select('acked_shared')
      .where('is_self', '=', false)
      .where('removed_at', 'is', null)
      .execute();
    if (peers.length === 0) return ALL_ACKNOWLEDGED;
    let min: string | null = null;
    for (const p of peers) {
      if (p.acked_shared === null) return null;
      if (min === null || p.acked_shared < min) min = p.acked_shared;
    }
    return min;
  }
}

/** The smallest state watermark for owner among the other active devices (ours included), or null if one has none. */
function horizonOf(
  owner: string,
  active: readonly { id: string; is_self: boolean; state_watermark: string | null }[],
  reported: readonly { peer_id: string; origin_id: string; state_watermark: string | null }[],
): string | null {
  let min: string | null = null;
  for (const d of active) {
    if (d.id === owner) continue;
    const wm = d.is_self
      ? active.find((x) => x.id === owner)?.state_watermark
      : reported.find((r) => r.peer_id === d.id && r.origin_id === owner)?.state_watermark;
    if (!wm) return null;
    if (min === null || wm < min) min = wm;
  }
  return min;
}
