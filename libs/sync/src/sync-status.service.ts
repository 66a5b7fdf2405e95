import type { Db } from '@lib/db';
import type { ClockService } from './clock/clock.service';
import { computeDigest, ModelDigest } from './models/digest';
import type { OwnedRepository } from './owned/owned.repository';
import { DeadLetterRepository } from './store/dead-letters.repository';
import type { DevicesRepository } from './store/devices.repository';
import type { SharedRepository } from './shared/shared.repository';
import type { SyncEngine } from './sync.engine';
import type { SyncOptions, SyncPhase } from './sync.options';
import { sql } from 'kysely';
import { decodeCursor } from './owned/cursor';
import { decodeHlc } from './clock/hlc';
import { OWNED_MODELS } from './models/registry';
import type { BackfillProgress } from './backfill/backfill';

export interface PeerStatus {
  deviceId: string;
  deviceName: string;
  /** The fingerprint of its pinned signing key (null until one of its messages was opened here). */
  fingerprint: string | null;
  member: boolean;
  online: boolean;
  lastSeenAt: string | null;
  stateWatermark: string | null;
  sharedWatermark: string | null;
  pendingToPeer: number;
  /**
   * Addition: how long ago (ms) the oldest of those pending changes was made, 0 when none is
   * pending: how far, in time, the peer trails this device.
   */
  lagMs: number;
  /** When all range digests last matched this peer's (anti-entropy), null if never in this run. */
  agreedAt: string | null;
}

export interface SyncStatus {
  deviceId: string;
  deviceName: string;
  libraryId: string;
  phase: SyncPhase;
  hlc: string;
  sharedLogSize: number;
  peers: PeerStatus[];
  /** Additions to docs/http.md's shape. */
  /** This device's signing key fingerprint, and the library key's current epoch here. */
  fingerprint: string;
  keyEpoch: number;
  natsConnected: boolean;
  clockDriftHeld: number;
  deadLetters: number;
  /** Progress of this process's backfill, while and after it runs (null: none ran). */
  backfill: BackfillProgress | null;
}

/** What /sync/status and /sync/digest report (docs/http.md "Health and sync state"). */
export class SyncStatusService {
  constructor(
    private readonly db: Db,
    private readonly options: SyncOptions,
    private readonly clock: ClockService,
    private readonly devices: DevicesRepository,
    private readonly shared: SharedRepository,
    private readonly owned: OwnedRepository,
    private readonly engine: SyncEngine,
  ) {}
  private readonly deadLetters = new DeadLetterRepository();

  async status(): Promise<SyncStatus> {
    const peers = await this.devices.peers(this.db);
    const fingerprints = this.engine.trust.fingerprints();
    return {
      deviceId: this.options.deviceId,
      deviceName: this.options.deviceName,
      libraryId: this.options.libraryId,
      phase: this.engine.phase,
      fingerprint: this.engine.trust.fingerprint,
      keyEpoch: this.engine.trust.currentEpoch,
      hlc: this.clock.current(),
      sharedLogSize: await this.shared.logSize(this.db),
      peers: await Promise.all(
        peers
          .filter((p) => p.removed_at === null)
          .map(async (p) => {
            const pendingToPeer = await this.pendingFor(p.acked_shared, p.acked_state);
            return {
              deviceId: p.id,
              deviceName: p.name,
              fingerprint: fingerprints.get(p.id) ?? null,
              member: this.engine.trust.isMember(p.id),
              online: p.online,
              lastSeenAt: p.last_seen_at ? new Date(p.last_seen_at).toISOString() : null,
              stateWatermark: p.state_watermark,
              sharedWatermark: p.shared_watermark,
              pendingToPeer,
              lagMs: pendingToPeer === 0 ? 0 : await this.lagFor(p.acked_shared, p.acked_state),
              agreedAt: this.engine.antiEntropy?.agreedAt(p.id) ?? null,
            };
          }),
      ),
      natsConnected: this.engine.natsConnected,
      clockDriftHeld: this.engine.clockDriftHeld,
      backfill: this.engine.backfill?.progress.source ? this.engine.backfill.progress : null,
      deadLetters: await this.deadLetters.count(this.db),
    };
  }

  /** Our changes the peer has not acknowledged yet: shared log rows and owned rows/tombstones. */
  private async pendingFor(ackedShared: string | null, ackedState: string | null): Promise<number> {
    const since = ackedState ? decodeCursor(ackedState).version : '';
    return (
      (await this.shared.countAfter(this.db, ackedShared)) +
      (await this.owned.countChangesAfter(this.db, this.options.deviceId, since))
    );
  }

  /** The age of the oldest of our changes after the peer's acknowledgements (shared log, owned rows and tombstones). */
  private async lagFor(ackedShared: string | null, ackedState: string | null): Promise<number> {
    const since = ackedState ? decodeCursor(ackedState).version : '';
    const owned = [...OWNED_MODELS.map((m) => m.table), 'owned_tombstones'].map(
      (table) =>
        sql`select min(version) as h from ${sql.table(table)} where device_id = ${this.options.deviceId} and version > ${since}`,
    );
    // one round trip: the oldest pending change of each source, then the oldest of those
    const r = await sql<{ h: string | null }>`select min(h) as h from (
      select min(hlc) as h from shared_changes where hlc > ${ackedShared ?? ''}
      ${sql.join(
        owned.map((q) => sql`union all ${q}`),
        sql` `,
      )}) oldest`.execute(this.db);
    const first = r.rows[0]?.h ?? null;
    return first === null ? 0 : Math.max(0, Date.now() - decodeHlc(first).physical);
  }

  async digest(): Promise<{ models: Record<string, ModelDigest> }> {
    return { models: await computeDigest(this.db) };
  }
}
