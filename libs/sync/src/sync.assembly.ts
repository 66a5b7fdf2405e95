import type { ChangeSignal } from './sync.signals';
import type { Db } from '@lib/db';
import { AntiEntropy } from './antientropy/anti-entropy';
import { BackfillService } from './backfill/backfill';
import { StateTransfer } from './backfill/state-transfer';
import type { ClockService } from './clock/clock.service';
import { ConsumeLoop } from './inbound/consume-loop';
import { decodeLogMessage } from './inbound/decode';
import { LogReceiver } from './inbound/log-receiver';
import type { SyncMetrics } from './metrics';
import { OwnedApplier } from './owned/owned-applier';
import { OwnedPublisher } from './owned/owned-publisher';
import type { OwnedRepository } from './owned/owned.repository';
import { CatchUpService } from './peers/catch-up';
import { CatchUpScheduler } from './peers/catch-up-scheduler';
import { PresenceService } from './peers/presence';
import { Pruner } from './peers/pruner';
import { PeerRemoval } from './peers/removal';
import { PeerClient } from './rpc/peer.client';
import type { WatermarksReply } from './rpc/protocol';
import { SharedApplier } from './shared/shared-applier';
import { SharedPublisher } from './shared/shared-publisher';
import type { SharedRepository } from './shared/shared.repository';
import type { DevicesRepository } from './store/devices.repository';
import { LocalStateRepository } from './store/local-state.repository';
import type { SyncOptions, SyncPhase } from './sync.options';
import { JetStreamTransport } from './transport/jetstream.transport';
import { PublishLoop } from './transport/publisher';
import { LibrarySubjects } from './transport/subjects';
import { type LibraryTrust, UnknownEpochError } from './trust/library-trust';
import { TrustSync } from './trust/trust-sync';
import { InviteService } from './trust/invites';
import type { JsMsg } from 'nats';

export interface EngineDeps {
  db: Db;
  options: SyncOptions;
  clock: ClockService;
  ownedRepo: OwnedRepository;
  sharedRepo: SharedRepository;
  devices: DevicesRepository;
  metrics: SyncMetrics;
  trust: LibraryTrust;
  /** Told when changes from peers commit (the change feed wakes on it). */
  signal: ChangeSignal;
}

/** What the parts ask of the engine's lifecycle. */
export interface EngineState {
  phase(): SyncPhase;
  /** The stream and our consumer exist on the current connection. */
  linked(): boolean;
  catchUpAllowed(): boolean;
  /** The stream or consumer vanished: set them up again. */
  relink(): void;
}

export type EngineParts = ReturnType<typeof assembleEngine>;

/**
 * Builds the parts of one device's engine and wires their events to each other: heartbeats
 * schedule catch-ups and pruning, applied messages schedule acks, gaps schedule catch-ups, local
 * writes (through the engine) wake the publishers.
 */
export function assembleEngine(deps: EngineDeps, engine: EngineState) {
  const { db, options: o, clock, ownedRepo, sharedRepo, devices, metrics, trust } = deps;
  const self = { id: o.deviceId, name: o.deviceName, libraryId: o.libraryId };
  const subjects = new LibrarySubjects(o.libraryId);
  // everything put on NATS is sealed by the library's trust, everything received opened by it
  const transport = new JetStreamTransport(
    o.nats ?? o.natsServers,
    `${o.deviceName} (${o.deviceId})`,
    subjects,
    o.deviceId,
    {
      sealer: trust,
      auth: o.natsAuth,
      replicas: o.streamReplicas ?? 1,
    },
  );
  const peers = new PeerClient(transport);
  const trustSync = new TrustSync(db, trust, peers, metrics);
  const invites = new InviteService(db, trust, subjects);
  transport.onRefused = (subject, e, data) => trustSync.refused(subject, e, data);
  /** The other devices online now, with their watermarks. */
  const discover = async (): Promise<WatermarksReply[]> =>
    (await peers.discover()).filter((p) => p.deviceId !== o.deviceId);

  const ownedApplier = new OwnedApplier(db, clock, ownedRepo, devices, metrics, deps.signal);
  const sharedApplier = new SharedApplier(db, clock, sharedRepo, devices, metrics, deps.signal);
  const pruner = new Pruner(db, devices, sharedRepo, metrics);
  const removal = new PeerRemoval(db, devices, transport, pruner, trust, self, engine.linked);
  const stateTransfer = new StateTransfer(db, peers, devices, sharedApplier, self);
  const catchUp = new CatchUpService(db, peers, devices, ownedApplier, sharedApplier, self, stateTransfer);
  const catchUps = new CatchUpScheduler(
    db,
    devices,
    catchUp,
    async () => (await discover()).map((p) => p.deviceId),
    engine.catchUpAllowed,
  );
  const heartbeatMs = o.heartbeatIntervalMs ?? 2000;
  const antiEntropy = new AntiEntropy(
    db,
    peers,
    ownedRepo,
    sharedRepo,
    clock,
    metrics,
    o.deviceId,
    heartbeatMs,
    // quiet here: ready, and no catch-up applying a peer's pages
    () => engine.phase() === 'ready' && !catchUps.running,
    (tx, owner) => devices.tombstoneHorizon(tx, owner),
  );
  const backfillOptions = { pauseMs: o.backfillPauseMs ?? 0, writers: o.backfillWriters ?? 2 };
  const backfill = new BackfillService(db, peers, stateTransfer, ownedApplier, devices, self, backfillOptions);
  const presence = new PresenceService(
    db,
    devices,
    transport,
    clock,
    metrics,
    self,
    heartbeatMs,
    engine.phase,
    async () => ({
      ownedHead: await ownedRepo.streamHead(db, o.deviceId),
      sharedHead: await sharedRepo.head(db),
    }),
    () => trust.digest(),
    {
      trustDigest: (id, digest) => trustSync.compare(id, digest),
      peerOnline: (id) => catchUps.schedule(id),
      acknowledged: () => void pruner.pruneAcknowledged(),
      peerAhead: (id, signature) => catchUps.peerAhead(id, signature),
      heartbeat: (hb, ahead) => void antiEntropy.heartbeat(hb, ahead),
    },
    () => antiEntropy.current(true),
  );

  const receiver = new LogReceiver(db, devices, ownedApplier, sharedApplier, metrics, o.deviceId, {
    applied: (origin) => {
      presence.scheduleAck(origin);
      antiEntropy.changed();
    },
    gap: (origin, kind) => catchUps.gap(origin, kind),
    removed: (msg) => removal.received(msg),
  });
  const decodeContext = {
    subjects,
    deviceId: o.deviceId,
    libraryId: o.libraryId,
    owned: ownedApplier,
    open: (subject: string, data: Uint8Array) => transport.open(subject, data),
  };
  const decode = (m: JsMsg) => {
    const d = decodeLogMessage(m, decodeContext);
    // a member's message under a key epoch we lack: ask it for the keys (the message is dead-lettered;
    // what it carried comes back through catch-up once the key is here)
    if (d.kind === 'rejected' && d.reason instanceof UnknownEpochError) trustSync.askSoon(d.reason.signer);
    return d;
  };
  const consumer = new ConsumeLoop(
    transport,
    engine.linked,
    decode,
    (m, decoded) => receiver.receive(m, decoded),
    engine.relink,
  );

  const state = new LocalStateRepository();
  const outbox = [db, state, transport, metrics, o.deviceId, o.libraryId] as const;
  const owned = new OwnedPublisher(ownedRepo, ...outbox);
  const shared = new SharedPublisher(sharedRepo, ...outbox);
  const canPublish = () => transport.connected && engine.linked();
  const failed = () => metrics.publishFailures.inc();
  const window = o.batchWindowMs ?? 25;
  const ownedLoop = new PublishLoop('OwnedPublisher', window, () => owned.drainOnce(), canPublish, failed);
  const sharedLoop = new PublishLoop('SharedPublisher', window, () => shared.drainOnce(), canPublish, failed);

  return {
    transport,
    trustSync,
    invites,
    discover,
    presence,
    antiEntropy,
    catchUps,
    pruner,
    removal,
    backfill,
    receiver,
    consumer,
    ownedLoop,
    ownedPublisher: owned,
    sharedLoop,
  };
}
