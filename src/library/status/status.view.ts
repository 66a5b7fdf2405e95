import { z } from 'zod';
import type { ModelDigest, PeerStatus, SyncStatus } from '@lib/sync';
import { idValue, timestampValue } from '../http/json-values';
import { errorBodySchema } from '../http/http-error.filter';

/** The answers of docs/http.md "Health and sync state", as zod schemas (the OpenAPI description's). */

export const syncPhaseSchema = z.enum(['uninitialized', 'backfilling', 'catching_up', 'ready', 'disabled', 'removed']);

const count = z.number().int().nonnegative();

export const peerStatusSchema = z
  .object({
    deviceId: idValue,
    deviceName: z.string(),
    fingerprint: z.string().nullable(),
    member: z.boolean(),
    online: z.boolean(),
    lastSeenAt: timestampValue.nullable(),
    stateWatermark: z.string().nullable(),
    sharedWatermark: z.string().nullable(),
    pendingToPeer: count,
    /** How long ago (ms) the oldest change this peer has not acknowledged was made; 0 when none. */
    lagMs: count,
    agreedAt: timestampValue.nullable(),
  })
  .strict();

export const backfillProgressSchema = z
  .object({
    source: idValue.nullable(),
    items: z.array(
      z
        .object({
          owner: idValue,
          model: z.string(),
          done: count,
          total: count.nullable(),
          startedAfter: z.string().nullable().optional(),
        })
        .strict(),
    ),
  })
  .strict();

export const syncStatusSchema = z
  .object({
    deviceId: idValue,
    deviceName: z.string(),
    libraryId: idValue,
    phase: syncPhaseSchema,
    fingerprint: z.string(),
    keyEpoch: count,
    hlc: z.string(),
    sharedLogSize: count,
    peers: z.array(peerStatusSchema),
    natsConnected: z.boolean(),
    clockDriftHeld: count,
    deadLetters: count,
    backfill: backfillProgressSchema.nullable(),
  })
  .strict();

export const digestSchema = z
  .object({ models: z.record(z.object({ count, hash: z.string().regex(/^[0-9a-f]{64}$/) }).strict()) })
  .strict();

export const inviteSchema = z.object({ token: z.string(), expiresAt: timestampValue }).strict();

/** GET /health while the database answers. */
export const healthSchema = z
  .object({
    status: z.enum(['ok', 'unavailable']),
    database: z.string(),
    sync: z.string(),
    nats: z.enum(['disabled', 'connected', 'disconnected']),
  })
  .strict();
/** GET /health when it does not (503): the error shape and the same fields. */
export const unhealthySchema = errorBodySchema.merge(healthSchema).strict();

/** GET /health/ready. */
export const readinessSchema = z
  .object({ status: z.enum(['ok', 'unavailable']), sync: z.string(), database: z.string() })
  .strict();
export const notReadySchema = errorBodySchema.merge(readinessSchema).strict();

/** GET /health/live. */
export const livenessSchema = z.object({ status: z.literal('ok') }).strict();

/** Compile time: a schema describes exactly the engine's type (a field added to one side fails the build). */
type Exactly<A, B> = [A] extends [B] ? ([B] extends [A] ? true : false) : false;
const _status: Exactly<z.infer<typeof syncStatusSchema>, SyncStatus> = true;
const _peer: Exactly<z.infer<typeof peerStatusSchema>, PeerStatus> = true;
const _backfill: Exactly<z.infer<typeof backfillProgressSchema>, NonNullable<SyncStatus['backfill']>> = true;
const _digest: Exactly<z.infer<typeof digestSchema>['models'][string], ModelDigest> = true;
