import { Logger } from '@nestjs/common';
import type { Transaction } from 'kysely';
import type { Database, Db } from '@lib/db';
import { SHARED_MODELS } from '../models/registry';
import type { PeerClient } from '../rpc/peer.client';
import type { WatermarksReply } from '../rpc/protocol';
import type { SharedApplier } from '../shared/shared-applier';
import type { DevicesRepository } from '../store/devices.repository';

/** Where a resumable transfer keeps its position per model ('done' once a model is complete). */
export interface TransferCheckpoint {
  load(model: string): Promise<string | null>;
  save: (model: string, key: string | null) => (tx: Transaction<Database>) => Promise<void>;
}

/**
 * A state transfer of the shared tables from one peer: what a new device does after its owned
 * data, and what catch-up does when the peer's change log was pruned past us.
 */
export class StateTransfer {
  private readonly logger = new Logger('StateTransfer');

  constructor(
    private readonly db: Db,
    private readonly peers: PeerClient,
    private readonly devices: DevicesRepository,
    private readonly shared: SharedApplier,
    private readonly self: { id: string },
  ) {}

  /**
   * A state transfer: every shared record with its field clocks, merged into ours. Afterwards we
   * hold every origin's changes up to what the peer had applied when we asked.
   */
  async run(peer: string, wm: WatermarksReply, checkpoint?: TransferCheckpoint): Promise<number> {
    let n = 0;
    for (const model of SHARED_MODELS) {
      let after = checkpoint ? (await checkpoint.load(model.name)) || null : null;
      if (after === 'done') continue;
      for (;;) {
        const page = await this.peers.snapshot(peer, {
          model: model.name,
          after,
        });
        const last = page.records.length ? page.records[page.records.length - 1].key : after;
        const mark = page.done ? 'done' : last;
        n += await this.shared.mergeSnapshot(model, page.records, checkpoint?.save(model.name, mark));
        if (page.done || page.records.length === 0) break;
        after = last;
      }
    }
    await this.db.transaction().execute(async (tx) => {
      for (const [origin, hlc] of Object.entries(wm.shared)) {
        if (origin === this.self.id) continue;
        await this.devices.ensurePeer(tx, origin);
        await this.devices.raiseSharedWatermark(tx, origin, hlc);
      }
      if (wm.sharedHead) {
        await this.devices.ensurePeer(tx, peer);
        await this.devices.raiseSharedWatermark(tx, peer, wm.sharedHead);
      }
    });
    this.logger.log(`state transfer from ${wm.name}: ${n} shared records merged`);
    return n;
  }
}
