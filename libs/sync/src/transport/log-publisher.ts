import type { Db } from '@lib/db';
import type { SyncMetrics } from '../metrics';
import type { LocalStateRepository } from '../store/local-state.repository';
import type { JetStreamTransport } from './jetstream.transport';

/**
 * What both publishers share: this device's stream of one kind, and the published position kept
 * in local state. A crash between a publish and saving its position only repeats the message:
 * the id (origin, kind, position) lets JetStream drop the copy, and applying is idempotent.
 */
export abstract class LogPublisher<Repository> {
  constructor(
    protected readonly repo: Repository,
    protected readonly db: Db,
    protected readonly state: LocalStateRepository,
    protected readonly transport: JetStreamTransport,
    protected readonly metrics: SyncMetrics,
    protected readonly deviceId: string,
    protected readonly libraryId: string,
  ) {}

  /** Publishes one page of unpublished changes; returns whether more may be waiting. */
  abstract drainOnce(): Promise<boolean>;

  /** Sends one message of our `kind` stream that reaches `position`. */
  protected async send(kind: 'state' | 'shared', text: string, position: string): Promise<void> {
    const subject = this.transport.subjects.log(kind, this.deviceId);
    await this.transport.publishLog(subject, Buffer.from(text), `${this.deviceId}:${kind}:${position}`);
  }
}
