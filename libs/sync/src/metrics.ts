import { Counter, Gauge, Histogram, Registry } from 'prom-client';

/** Prometheus metrics of one device's sync engine (served at /metrics). */
export class SyncMetrics {
  readonly registry = new Registry();
  readonly sent = new Counter({
    name: 'sync_changes_sent_total',
    help: 'Changes published, per model',
    labelNames: ['model'],
    registers: [this.registry],
  });
  readonly sentAsCopy = new Counter({
    name: 'sync_changes_sent_as_copy_total',
    help: 'Of the changes published, those that travelled as COPY text (a backlog of one model), per model',
    labelNames: ['model'],
    registers: [this.registry],
  });
  readonly applied = new Counter({
    name: 'sync_changes_applied_total',
    help: 'Remote changes applied, per model',
    labelNames: ['model'],
    registers: [this.registry],
  });
  readonly applySeconds = new Histogram({
    name: 'sync_apply_seconds',
    help: 'Time to apply one received message',
    labelNames: ['kind'],
    buckets: [0.001, 0.005, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
    registers: [this.registry],
  });
  readonly conflicts = new Counter({
    name: 'sync_conflicts_resolved_total',
    help: 'Received shared field values that lost to a newer local value',
    labelNames: ['model'],
    registers: [this.registry],
  });
  readonly rejected = new Counter({
    name: 'sync_rejected_total',
    help: 'Messages rejected, per reason',
    labelNames: ['reason'],
    registers: [this.registry],
  });
  readonly deadLettered = new Counter({
    name: 'sync_dead_lettered_total',
    help: 'Messages terminated into the dead-letter table',
    registers: [this.registry],
  });
  readonly driftHeld = new Counter({
    name: 'sync_clock_drift_held_total',
    help: 'Messages held because their clock is too far ahead',
    registers: [this.registry],
  });
  readonly publishFailures = new Counter({
    name: 'sync_publish_failures_total',
    help: 'Failed publish attempts (retried)',
    registers: [this.registry],
  });
  readonly logSize = new Gauge({
    name: 'sync_shared_log_size',
    help: 'Rows in this device shared change log',
    registers: [this.registry],
  });
  readonly pruned = new Counter({
    name: 'sync_shared_log_pruned_total',
    help: 'Change-log rows pruned after acknowledgement',
    registers: [this.registry],
  });
  readonly peerPending = new Gauge({
    name: 'sync_peer_pending',
    help: 'Our changes not yet acknowledged by a peer',
    labelNames: ['peer'],
    registers: [this.registry],
  });
  readonly peerOnline = new Gauge({
    name: 'sync_peer_online',
    help: '1 when the peer is online',
    labelNames: ['peer'],
    registers: [this.registry],
  });
  readonly peerLagMs = new Gauge({
    name: 'sync_peer_lag_ms',
    help: 'Age of the last heartbeat of a peer',
    labelNames: ['peer'],
    registers: [this.registry],
  });
  readonly repairs = new Counter({
    name: 'sync_repairs_total',
    help: 'Rows repaired by anti-entropy (written, deleted or merged), per model',
    labelNames: ['model'],
    registers: [this.registry],
  });
  readonly reconciliations = new Counter({
    name: 'sync_reconciliations_total',
    help: 'Anti-entropy reconciliations run with a peer',
    registers: [this.registry],
  });
  readonly phase = new Gauge({
    name: 'sync_phase',
    help: "1 for the library's current sync phase, 0 for the others",
    labelNames: ['phase'],
    registers: [this.registry],
  });
  readonly backfillDone = new Gauge({
    name: 'sync_backfill_rows_done',
    help: 'Rows pulled by the backfill of this process (while and after it runs)',
    registers: [this.registry],
  });
  readonly backfillTotal = new Gauge({
    name: 'sync_backfill_rows_total',
    help: 'Rows the backfill of this process has to pull, as its source counted them',
    registers: [this.registry],
  });
  readonly deadLetters = new Gauge({
    name: 'sync_dead_letters',
    help: 'Refused messages kept in dead_letters',
    registers: [this.registry],
  });
  readonly reconcileRowsReceived = new Counter({
    name: 'sync_reconcile_rows_received_total',
    help: 'Rows, tombstones and records received from peers by anti-entropy, per model',
    labelNames: ['model'],
    registers: [this.registry],
  });
}
