import type { NatsHub } from './transport/nats-hub';
import type { NatsAuth } from './transport/nats-auth';

/** Everything the sync engine needs to know about the device it runs in. */
export interface SyncOptions {
  deviceId: string;
  deviceName: string;
  libraryId: string;
  /** NATS servers (with JetStream); the engine connects in the background and keeps retrying. */
  natsServers: string[];
  /** The device's shared NATS connection (several libraries on one device); without it the engine connects on its own. */
  nats?: NatsHub;
  /** Credentials of this device's NATS user, when the servers require them (never logged). */
  natsAuth?: NatsAuth | null;
  /** false: the device serves its data but neither sends nor receives changes (phase "disabled"). */
  enabled: boolean;
  /** A remote stamp further ahead than this is held, not applied (docs/design.md "Clocks"). */
  maxClockDriftMs: number;
  /** Heartbeat period; a peer that misses three is offline. Default 2000. */
  heartbeatIntervalMs?: number;
  /** Coalescing window of outgoing changes while writes keep coming (an idle device sends at once). Default 25. */
  batchWindowMs?: number;
  /** Pause between backfill pages (spares a busy serving peer). Default 0. */
  backfillPauseMs?: number;
  /**
   * Backfill pages written at once, each in its own transaction (commits stay in order). Default
   * 2; must be 1 when the database has a single session (embedded PGlite).
   */
  backfillWriters?: number;
  /** Replicas of the library's stream (created so, or raised in place). Default 1. */
  streamReplicas?: number;
  /** How often the change log is pruned even without new acknowledgements (they prune it too). Default 30000. */
  pruneIntervalMs?: number;
}

export const SYNC_OPTIONS = Symbol('SYNC_OPTIONS');

export type SyncPhase = 'uninitialized' | 'backfilling' | 'catching_up' | 'ready' | 'disabled' | 'removed';
