import type { JsMsg } from 'nats';
import { RejectedMessageError } from '../errors';
import type { OwnedApplier, PreparedState } from '../owned/owned-applier';
import { describeZodError, LogMessage } from '../transport/messages';
import type { LibrarySubjects } from '../transport/subjects';
import type { Opened } from '../trust/library-trust';

/** A log message after decoding: ours (skipped), refused (to dead-letter), or to apply. */
export type Decoded =
  | { kind: 'own' }
  | { kind: 'rejected'; origin: string | null; reason: RejectedMessageError; raw: string }
  | { kind: 'message'; msg: LogMessage; raw: string; state: PreparedState | null };

export interface DecodeContext {
  subjects: LibrarySubjects;
  deviceId: string;
  libraryId: string;
  owned: Pick<OwnedApplier, 'prepare'>;
  /** Opens a sealed message (JetStreamTransport.open). */
  open(subject: string, data: Uint8Array): Opened;
}

/**
 * The part of handling a log message that needs no database: parsing and validation (and, for
 * state, the rows serialised for the upserts). Pure, so the fetch loop runs it for the next
 * message while the current one is being written.
 */
export function decodeLogMessage(m: JsMsg, ctx: DecodeContext): Decoded {
  const subjectOrigin = ctx.subjects.originOf(m.subject);
  // our own broadcast coming back through the shared stream: nothing to apply, not worth parsing
  if (subjectOrigin === ctx.deviceId) return { kind: 'own' };
  let raw = '';
  try {
    // a member's seal, signed by the device the subject names (else refused, with the reason)
    const opened = ctx.open(m.subject, m.data);
    raw = opened.plaintext.toString('utf8');
    const parsed = LogMessage.safeParse(JSON.parse(raw));
    if (!parsed.success) throw new RejectedMessageError('malformed', describeZodError(parsed.error));
    const msg = parsed.data;
    if (msg.library !== ctx.libraryId) throw new RejectedMessageError('wrong_library', `library ${msg.library}`);
    if (msg.origin !== subjectOrigin)
      throw new RejectedMessageError('origin_mismatch', `subject names ${subjectOrigin}, payload ${msg.origin}`);
    return { kind: 'message', msg, raw, state: msg.kind === 'state' ? ctx.owned.prepare(msg, raw) : null };
  } catch (e) {
    const reason =
      e instanceof RejectedMessageError
        ? e
        : new RejectedMessageError('malformed', `not JSON: ${(e as Error).message}`);
    // what did not open is kept as the bytes received
    return { kind: 'rejected', origin: subjectOrigin, reason, raw: raw || Buffer.from(m.data).toString('base64') };
  }
}
