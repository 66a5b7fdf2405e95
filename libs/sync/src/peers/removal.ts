import { Logger } from '@nestjs/common';
import type { Db } from '@lib/db';
import { InvalidInputError, NotFoundError, RejectedMessageError } from '../errors';
import { CheckpointsRepository } from '../store/checkpoints.repository';
import type { DevicesRepository } from '../store/devices.repository';
import type { JetStreamTransport } from '../transport/jetstream.transport';
import type { RemovedMessage } from '../transport/messages';
import { parseRemoval } from '../trust/certificates';
import type { LibraryTrust, Rotation } from '../trust/library-trust';
import type { Pruner } from './pruner';

const ANNOUNCED = 'announce:removed:';

/**
 * Removing a device from the library (an operator's decision, e.g. a lost laptop). The remover
 * signs the removal and rotates the library key to a new epoch sealed to every remaining member,
 * records both at once and announces them through the stream (again at every connection,
 * deduplicated): from then on the removed device's messages are refused everywhere, it cannot
 * open anything sealed afterwards, and it no longer holds back pruning.
 */
export class PeerRemoval {
  private readonly logger = new Logger('PeerRemoval');
  private readonly checkpoints = new CheckpointsRepository();

  constructor(
    private readonly db: Db,
    private readonly devices: DevicesRepository,
    private readonly transport: JetStreamTransport,
    private readonly pruner: Pruner,
    private readonly trust: LibraryTrust,
    private readonly self: { id: string; libraryId: string },
    private readonly linked: () => boolean,
  ) {}

  async remove(id: string): Promise<void> {
    if (id === this.self.id) throw new InvalidInputError('deviceId', 'a device cannot remove itself');
    const known = await this.devices.get(this.db, id);
    if (!known && !this.trust.isMember(id)) throw new NotFoundError('device', id);
    if (this.trust.isMember(id)) {
      const before = this.trust.currentKeyId;
      const { removal, rotation } = await this.trust.removeMember(id);
      await this.record(id, removal.bytes.toString('base64'), rotation, before);
    }
    await this.devices.markRemoved(this.db, id);
    if (this.transport.connected && this.linked()) await this.announceAll().catch(() => undefined);
    await this.pruner.pruneAcknowledged();
  }

  /**
   * This device leaves the library: it announces its own removal, signed by itself (no rotation:
   * it must not know the next key; the first member that takes the removal rotates, see
   * `received`). Throws when the announcement could not be published.
   */
  async leave(): Promise<void> {
    const removal = this.trust.departure();
    const msg: RemovedMessage = {
      v: 1,
      kind: 'removed',
      library: this.self.libraryId,
      origin: this.self.id,
      device: this.self.id,
      removal: removal.bytes.toString('base64'),
      rotation: null,
    };
    const subject = this.transport.subjects.log('removed', this.self.id);
    await this.transport.publishLog(subject, Buffer.from(JSON.stringify(msg)), `${ANNOUNCED}${this.self.id}:left`);
  }

  /**
   * Keeps the announcement, so it is repeated after every connection. It is sealed under the
   * epoch the rotation replaces (`sealUnder`): the one its recipients hold.
   */
  private async record(device: string, removal: string, rotation: Rotation | null, sealUnder: string): Promise<void> {
    const msg: RemovedMessage = {
      v: 1,
      kind: 'removed',
      library: this.self.libraryId,
      origin: this.self.id,
      device,
      removal,
      rotation,
    };
    await this.checkpoints.set(
      this.db,
      `${ANNOUNCED}${device}:${rotation?.keyId ?? 'none'}`,
      JSON.stringify({ sealUnder, msg }),
    );
  }

  /** Announces every removal (and rotation) this device made (after each connection: a peer may have missed one). */
  async announceAll(): Promise<void> {
    const rows = await this.db
      .selectFrom('sync_checkpoints')
      .select(['key', 'value'])
      .where('key', 'like', `${ANNOUNCED}%`)
      .execute();
    for (const r of rows) {
      const { sealUnder, msg } = JSON.parse(r.value) as { sealUnder: string; msg: RemovedMessage };
      const subject = this.transport.subjects.log('removed', this.self.id);
      await this.transport.publishLog(subject, Buffer.from(JSON.stringify(msg)), r.key, sealUnder);
    }
  }

  /**
   * A member announced a removal: record it (refused unless a member signed it) and take the new
   * epoch. When rotations raced and the newest epoch still reached a removed device, rotate again.
   */
  async received(msg: RemovedMessage): Promise<void> {
    const removal = parseRemoval(Buffer.from(msg.removal, 'base64'));
    if (!removal || removal.device !== msg.device)
      throw new RejectedMessageError('malformed', 'the removal does not match the removed device');
    if (msg.rotation) await this.trust.acceptRotation(msg.rotation, msg.origin);
    if (await this.trust.applyRemoval(removal))
      this.logger.log(`device ${msg.device} was removed from the library by ${removal.removedBy}`);
    if (msg.device !== this.self.id) await this.devices.markRemoved(this.db, msg.device);
    if (!this.trust.removed && this.trust.currentKeyReachesRemoved) {
      const before = this.trust.currentKeyId;
      const rotation = await this.trust.rotate();
      await this.record(msg.device, msg.removal, rotation, before);
      if (this.transport.connected && this.linked()) await this.announceAll();
    }
  }
}
