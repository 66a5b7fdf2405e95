import { Logger } from '@nestjs/common';
import type { Db } from '@lib/db';
import type { OwnedApplier } from '../owned/owned-applier';
import type { StateTransfer } from '../backfill/state-transfer';
import type { SharedApplier } from '../shared/shared-applier';
import type { DevicesRepository } from '../store/devices.repository';
import type { PeerClient } from '../rpc/peer.client';
import { WatermarksReply } from '../rpc/protocol';

/**
 * Incremental catch-up from one peer, after a watermark exchange: device-owned rows and tombstones
 * above our state watermark of each owner the peer holds further than we do, the peer's own shared
 * changes above our shared watermark, or a state transfer of the shared tables when its log was
 * pruned past us (or holds changes of an origin that is offline). Every page commits with the
 * watermark it reaches, so an interrupted catch-up resumes where it stopped.
 */
export class CatchUpService {
  private readonly logger = new Logger('CatchUp');

  constructor(
    private readonly db: Db,
    private readonly peers: PeerClient,
    private readonly devices: DevicesRepository,
    private readonly owned: OwnedApplier,
    private readonly shared: SharedApplier,
    private readonly self: { id: string; libraryId: string },
    private readonly stateTransfer: StateTransfer,
  ) {}

  async watermarksOf(peer: string): Promise<WatermarksReply> {
    return this.peers.watermarks(peer);
  }

  /** Returns the number of owned changes and shared records pulled. */
  async catchUpFrom(peer: string): Promise<number> {
    const wm = await this.watermarksOf(peer);
    let pulled = 0;
    const owners = new Map(Object.entries(wm.state));
    if (wm.ownedHead) owners.set(peer, wm.ownedHead);
    for (const [owner, theirs] of owners) {
      if (owner === this.self.id) continue;
      pulled += await this.pullOwned(peer, owner, theirs);
    }
    pulled += await this.pullShared(peer, wm);
    if (pulled) this.logger.log(`caught up ${pulled} changes from ${wm.name} (${peer})`);
    return pulled;
  }

  /** Pages owner's stream from peer after our watermark, raising it as far as the peer vouches for. */
  private async pullOwned(peer: string, owner: string, theirs: string): Promise<number> {
    let after = (await this.devices.get(this.db, owner))?.state_watermark ?? null;
    if (after !== null && after >= theirs) return 0;
    let n = 0;
    for (;;) {
      const page = await this.peers.ownedPage(peer, {
        owner,
        after,
      });
      const last = page.last ?? after;
      // a finished stream vouches up to the peer's watermark; a partial page only up to its end
      const to = page.done || last === null || last > theirs ? theirs : last;
      await this.owned.apply(this.owned.preparePage(this.self.libraryId, owner, after, to, page));
      n += page.rows.reduce((k, g) => k + g.values.length, 0) + page.tombstones.length;
      if (page.done || page.last === null) return n;
      after = last;
    }
  }

  private async pullShared(peer: string, wm: WatermarksReply): Promise<number> {
    const online = new Set((await this.devices.peers(this.db)).filter((p) => p.online).map((p) => p.id));
    let snapshotNeeded = false;
    let n = 0;
    const origins = new Map(Object.entries(wm.shared));
    if (wm.sharedHead) origins.set(peer, wm.sharedHead);
    for (const [origin, theirs] of origins) {
      if (origin === this.self.id) continue;
      const ours = (await this.devices.get(this.db, origin))?.shared_watermark ?? null;
      if (ours !== null && ours >= theirs) continue;
      if (origin !== peer) {
        // only the origin keeps its log; if it is online we catch up from it directly
        if (!online.has(origin)) snapshotNeeded = true;
        continue;
      }
      const pulled = await this.pullSharedLog(peer, ours);
      if (pulled === null) snapshotNeeded = true;
      else n += pulled;
    }
    if (snapshotNeeded) n += await this.stateTransfer.run(peer, wm);
    return n;
  }

  /** The peer's own change log after `after`; null when it was pruned past that point. */
  private async pullSharedLog(peer: string, after: string | null): Promise<number | null> {
    let n = 0;
    for (;;) {
      const page = await this.peers.sharedChanges(peer, { after });
      if (!page.complete) return null;
      if (page.changes.length === 0) return n;
      await this.shared.apply({
        v: 1,
        kind: 'shared',
        library: this.self.libraryId,
        origin: peer,
        prev: after,
        changes: page.changes,
      });
      n += page.changes.length;
      after = page.changes[page.changes.length - 1].hlc;
      if (page.done) return n;
    }
  }
}
