import type { Db } from '@lib/db';
import { InvalidInputError, NotFoundError } from '../errors';
import type { DevicesRepository } from '../store/devices.repository';
import type { JetStreamTransport } from '../transport/jetstream.transport';
import type { RemovedMessage } from '../transport/messages';
import type { Pruner } from './pruner';

/**
 * Removing a device from the library (an operator's decision, e.g. a lost laptop): recorded here at
 * once and announced through the stream (again at every connection, deduplicated), so every device
 * stops waiting for its acknowledgements.
 */
export class PeerRemoval {
  constructor(
    private readonly db: Db,
    private readonly devices: DevicesRepository,
    private readonly transport: JetStreamTransport,
    private readonly pruner: Pruner,
    private readonly self: { id: string; libraryId: string },
    private readonly linked: () => boolean,
  ) {}

  async remove(id: string): Promise<void> {
    if (id === this.self.id) throw new InvalidInputError('deviceId', 'a device cannot remove itself');
    const known = await this.devices.get(this.db, id);
    if (!known) throw new NotFoundError('device', id);
    await this.devices.markRemoved(this.db, id);
    if (this.transport.connected && this.linked()) await this.announce(id).catch(() => undefined);
    await this.pruner.pruneAcknowledged();
  }

  /** Announces every removal we know of (after each connection: a peer may have missed one). */
  async announceAll(): Promise<void> {
    for (const id of await this.devices.removed(this.db)) await this.announce(id);
  }

  private async announce(id: string): Promise<void> {
    const msg: RemovedMessage = {
      v: 1,
      kind: 'removed',
      library: this.self.libraryId,
      origin: this.self.id,
      device: id,
    };
    const subject = this.transport.subjects.log('removed', this.self.id);
    await this.transport.publishLog(subject, Buffer.from(JSON.stringify(msg)), `removed:${id}`);
  }
}
