import { randomUUID } from 'node:crypto';
import { AckPolicy, connect, DeliverPolicy, JetStreamManager, NatsConnection } from 'nats';
import { LibrarySubjects, LibraryTrust } from '@lib/sync';
import { LONG, waitFor } from './device-harness';

/**
 * The broker as the tests see it from outside: hand-built wire messages, and a raw NATS client
 * that publishes them and inspects (or breaks) a library's stream and consumers behind the
 * devices' backs.
 */

// ---------------------------------------------------------------------------------------------
// The wire (transport/messages.ts, transport/subjects.ts), written out here on purpose: the tests
// that forge messages speak the protocol as a foreign device would.

export const streamName = (libraryId: string): string => `SYNC_${libraryId.replace(/-/g, '')}`;
export const durableName = (deviceId: string): string => `device_${deviceId.replace(/-/g, '')}`;
export const logSubject = (libraryId: string, kind: 'state' | 'shared' | 'hello', origin: string): string =>
  `sync.${libraryId}.log.${kind}.${origin}`;

/** A clock stamp as the engine encodes it: 15 digits of ms, 6 of counter, the node id. */
export function stamp(ms: number, logical: number, node: string): string {
  return `${String(ms).padStart(15, '0')}-${String(logical).padStart(6, '0')}-${node}`;
}
export const stampMs = (hlc: string): number => Number(hlc.slice(0, 15));

/** An owned-stream cursor: (version, model order, id); entries are order 2, locations 1, volumes 0, tombstones 9. */
export const cursor = (version: string, kind: number, id: string): string => `${version}|${kind}|${id}`;

export interface WireChange {
  hlc: string;
  model: string;
  record_key: string;
  op: 'set' | 'delete';
  fields: Record<string, unknown>;
}

export function sharedMessage(
  libraryId: string,
  origin: string,
  changes: WireChange[],
  prev: string | null = null,
): Record<string, unknown> {
  return { v: 1, kind: 'shared', library: libraryId, origin, prev, changes };
}

export function stateMessage(
  libraryId: string,
  origin: string,
  body: {
    from: string | null;
    to: string;
    rows?: { model: string; row: Record<string, unknown> }[];
    /** Rows as values in column order, as devices send them. */
    columns?: { model: string; values: unknown[][] }[];
    /** Rows of one model as COPY text, as devices send a backlog (see copyText). */
    copy?: { model: string; rows: number; data: string };
    tombstones?: { model: string; id: string; device_id: string; version: string }[];
  },
): Record<string, unknown> {
  return {
    v: 1,
    kind: 'state',
    library: libraryId,
    origin,
    from: body.from,
    to: body.to,
    rows: body.rows ?? [],
    ...(body.columns ? { columns: body.columns } : {}),
    ...(body.copy ? { copy: body.copy } : {}),
    tombstones: body.tombstones ?? [],
  };
}

/** Rows as COPY text lines of `columns` (values as text, null as \\N; none may need escaping). */
export function copyText(columns: readonly string[], rows: readonly Record<string, unknown>[]): string {
  return rows.map((r) => `${columns.map((c) => (r[c] === null ? '\\N' : String(r[c]))).join('\t')}\n`).join('');
}

/** An entries row in wire form (snake_case, ISO timestamps), owned by `owner` at `version`. */
export function entryRow(
  owner: string,
  version: string,
  o: { id: string; locationId: string; name: string },
): Record<string, unknown> {
  return {
    id: o.id,
    device_id: owner,
    location_id: o.locationId,
    name: o.name,
    path: `/forged/${o.name}`,
    kind: 'file',
    size_bytes: 1,
    modified_at: '2024-01-01T00:00:00.000Z',
    version,
    updated_at: new Date(stampMs(version)).toISOString(),
  };
}

// ---------------------------------------------------------------------------------------------
// A raw NATS client of the test (not a device)

export class Broker {
  /** Member identities this client speaks as, by device id (each with key pairs of its own). */
  private readonly members = new Map<string, LibraryTrust>();

  private constructor(
    readonly nc: NatsConnection,
    /** The library's subjects, stream and consumer names as the engine derives them. */
    readonly subjects: LibrarySubjects,
    /** Libraries' pre-shared keys: with one this client can speak as a member (null: an outsider). */
    private readonly libraryKey: ((libraryId: string) => Buffer) | null,
  ) {}

  /** Reconnects forever: it outlives broker restarts of the test. */
  static async connect(
    natsUrl: string,
    libraryId: string,
    libraryKey: ((libraryId: string) => Buffer) | null = null,
  ): Promise<Broker> {
    return new Broker(
      await connect({ servers: natsUrl, name: 'test-broker', maxReconnectAttempts: -1, reconnectTimeWait: 200 }),
      new LibrarySubjects(libraryId),
      libraryKey,
    );
  }

  /**
   * A member device of a library with this id, as the pre-shared key lets any holder be: new key
   * pairs, certified by itself (what a device started with LIBRARY_KEY does).
   */
  member(deviceId: string, libraryId = this.subjects.libraryId): LibraryTrust {
    if (!this.libraryKey) throw new Error('this broker client holds no library key');
    const k = `${libraryId}/${deviceId}`;
    let m = this.members.get(k);
    if (!m) this.members.set(k, (m = LibraryTrust.inMemory(libraryId, deviceId, this.libraryKey(libraryId))));
    return m;
  }

  /**
   * Publishes a payload (object → JSON, string → as is) with its own Nats-Msg-Id; returns the
   * PubAck. Sealed as the member the subject names (the sender's segment) when this client holds
   * the library key, so the devices judge the content; `raw` publishes the bytes as they are.
   */
  async publish(
    subject: string,
    payload: unknown,
    msgID: string = randomUUID(),
    o: { raw?: boolean; as?: string } = {},
  ): Promise<{ seq: number; duplicate: boolean }> {
    let data: Uint8Array =
      payload instanceof Uint8Array
        ? payload
        : typeof payload === 'string'
          ? Buffer.from(payload)
          : Buffer.from(JSON.stringify(payload));
    if (!o.raw && this.libraryKey) {
      const [, library, , , sender] = subject.split('.');
      if (!(o.as ?? sender)) throw new Error(`say whom to publish ${subject} as`);
      data = this.member(o.as ?? sender, library).seal(subject, data).data;
    }
    const ack = await this.nc.jetstream().publish(subject, data, { msgID });
    return { seq: ack.seq, duplicate: ack.duplicate };
  }

  /** Short API timeouts: a request caught by a broker restart is lost, and polls simply retry. */
  jsm(): Promise<JetStreamManager> {
    return this.nc.jetstreamManager({ timeout: 2000 });
  }

  async consumerExists(deviceId: string): Promise<boolean> {
    const jsm = await this.jsm();
    try {
      await jsm.consumers.info(this.subjects.stream, this.subjects.durable(deviceId));
      return true;
    } catch {
      return false;
    }
  }

  /** Waits until JetStream answers this client (after a broker restart). */
  async waitReachable(timeoutMs = LONG): Promise<void> {
    await waitFor('JetStream to answer', async () => !!(await (await this.jsm()).getAccountInfo()), timeoutMs, 100);
  }

  async streamExists(): Promise<boolean> {
    const jsm = await this.jsm();
    try {
      await jsm.streams.info(this.subjects.stream);
      return true;
    } catch {
      return false;
    }
  }

  /** Messages waiting in the device's durable consumer (not yet delivered, or not yet acked). */
  async pending(deviceId: string): Promise<number> {
    const jsm = await this.jsm();
    const info = await jsm.consumers.info(this.subjects.stream, this.subjects.durable(deviceId));
    return info.num_pending + info.num_ack_pending;
  }

  /** The filter subject of the device's durable consumer (null: no such consumer). */
  async consumerFilter(deviceId: string): Promise<string | null> {
    const jsm = await this.jsm();
    try {
      return (
        (await jsm.consumers.info(this.subjects.stream, this.subjects.durable(deviceId))).config.filter_subject ?? null
      );
    } catch {
      return null;
    }
  }

  /**
   * Deletes the device's durable consumer and puts a stand-in of the same name in its place that
   * delivers nothing: the device fetches from it without noticing anything, so whatever is
   * published meanwhile never reaches its queue (deterministically, unlike a bare delete that the
   * device may repair within milliseconds). Deleting the stand-in then looks to the device like
   * the loss of its consumer.
   */
  async replaceConsumerWithStandIn(deviceId: string, timeoutMs = LONG): Promise<void> {
    const jsm = await this.jsm();
    const standIn = `sync.${this.subjects.libraryId}.log.stand-in`;
    await waitFor(
      `a stand-in consumer for ${deviceId}`,
      async () => {
        if ((await this.consumerFilter(deviceId)) === standIn) return true;
        await jsm.consumers.delete(this.subjects.stream, this.subjects.durable(deviceId)).catch(() => false);
        await jsm.consumers
          .add(this.subjects.stream, {
            durable_name: this.subjects.durable(deviceId),
            ack_policy: AckPolicy.Explicit,
            deliver_policy: DeliverPolicy.New,
            filter_subject: standIn,
          })
          .catch(() => undefined); // the device recreated its own first: try again
        return (await this.consumerFilter(deviceId)) === standIn;
      },
      timeoutMs,
      10,
    );
  }

  /** The stream's last sequence number (0 when empty). */
  async lastSeq(): Promise<number> {
    const jsm = await this.jsm();
    return (await jsm.streams.info(this.subjects.stream)).state.last_seq;
  }

  async deleteConsumer(deviceId: string): Promise<boolean> {
    const jsm = await this.jsm();
    return jsm.consumers.delete(this.subjects.stream, this.subjects.durable(deviceId));
  }

  async waitConsumer(deviceId: string, timeoutMs = LONG): Promise<void> {
    await waitFor(`durable consumer of ${deviceId}`, () => this.consumerExists(deviceId), timeoutMs, 100);
  }

  async close(): Promise<void> {
    await this.nc.close().catch(() => undefined);
  }
}
