/** The device a subject says sent it, when the subject says one (log, presence, ack subjects). */
export function senderOf(subject: string): string | null {
  const parts = subject.split('.');
  if (parts[0] !== 'sync') return null;
  if (parts[2] === 'log' && parts.length === 5) return parts[4];
  if (parts[2] === 'presence' && parts.length === 4) return parts[3];
  if (parts[2] === 'ack' && parts.length === 5) return parts[4];
  return null;
}

/**
 * Subject and stream names of a library. Log messages (kept in JetStream) live under
 * sync.<library>.log.<kind>.<origin>; presence and acks are core NATS, never stored. Every subject
 * a device publishes on names that device (or is a request), so NATS authorization can confine it
 * (deploy/nats/authorization.cjs).
 */
export class LibrarySubjects {
  constructor(readonly libraryId: string) {}

  get stream(): string {
    return `SYNC_${this.libraryId.replace(/-/g, '')}`;
  }
  /** The one filter every device's consumer uses (nats-server 2.9: one filter per consumer). */
  get logAll(): string {
    return `sync.${this.libraryId}.log.>`;
  }
  log(kind: 'state' | 'shared' | 'hello' | 'removed', origin: string): string {
    return `sync.${this.libraryId}.log.${kind}.${origin}`;
  }
  /** The origin device named by a log subject, or null when the subject is not one of ours. */
  originOf(subject: string): string | null {
    const parts = subject.split('.');
    return parts.length === 5 && parts[0] === 'sync' && parts[1] === this.libraryId && parts[2] === 'log'
      ? parts[4]
      : null;
  }
  get presenceAll(): string {
    return `sync.${this.libraryId}.presence.*`;
  }
  presence(device: string): string {
    return `sync.${this.libraryId}.presence.${device}`;
  }
  /** An ack to `target` from `sender`: the subject names its sender, so NATS can confine who sends it. */
  ack(target: string, sender: string): string {
    return `sync.${this.libraryId}.ack.${target}.${sender}`;
  }
  /** Every ack sent to `target`. */
  acksFor(target: string): string {
    return `sync.${this.libraryId}.ack.${target}.*`;
  }
  rpc(device: string, method: string): string {
    return `sync.${this.libraryId}.rpc.${device}.${method}`;
  }
  /** Every device of the library answers here (discovery of online peers). */
  rpcAll(method: string): string {
    return `sync.${this.libraryId}.rpc.all.${method}`;
  }
  /** Where a member answers the devices presenting its invites. */
  join(inviter: string): string {
    return `sync.${this.libraryId}.join.${inviter}`;
  }
  durable(device: string): string {
    return `device_${device.replace(/-/g, '')}`;
  }
}
