import { sql } from 'kysely';
import type { DbOrTx } from '@lib/db';
import { ClockDriftError } from '../errors';
import { decodeHlc, driftAhead, encodeHlc, Hlc, HLC_ZERO, receive, tick, compareHlc } from './hlc';

const CLOCK_KEY = 'hlc';

/**
 * This device's hybrid logical clock and its persistence. Every stamp is issued inside the
 * transaction that uses it, under a row lock on the persisted value: stamps are persisted with the
 * write they stamp, and the writes of one device commit in stamp order (which lets the owned rows
 * themselves serve as the broadcast log).
 */
export class ClockService {
  private last: Hlc = HLC_ZERO;

  constructor(
    readonly node: string,
    private readonly maxDriftMs: number,
    private readonly wallClock: () => number = Date.now,
  ) {}

  /** Resumes above the last persisted stamp, whatever the wall clock says. */
  async load(db: DbOrTx): Promise<void> {
    await sql`insert into sync_local_state (key, value) values (${CLOCK_KEY}, ${encodeHlc({ ...HLC_ZERO, node: this.node })}) on conflict (key) do nothing`.execute(
      db,
    );
    const row = await db.selectFrom('sync_local_state').select('value').where('key', '=', CLOCK_KEY).executeTakeFirst();
    if (row) this.raise(decodeHlc(row.value));
  }

  /** The current clock value (not a new stamp). */
  current(): string {
    return encodeHlc({ ...this.last, node: this.node });
  }

  /** Issues a new stamp inside tx; serializes with every other stamping transaction. */
  async stamp(tx: DbOrTx): Promise<string> {
    await this.lockAndSync(tx);
    this.last = tick(this.last, this.wallClock(), this.node);
    return this.persist(tx);
  }

  /** Checks a remote stamp against the drift bound; throws ClockDriftError and changes nothing. */
  checkDrift(remote: string): void {
    const ahead = driftAhead(decodeHlc(remote), this.wallClock());
    if (ahead > this.maxDriftMs) throw new ClockDriftError(remote, ahead);
  }

  /** HLC receive rule inside tx: afterwards every local stamp is greater than `remote`. */
  async observe(tx: DbOrTx, remote: string): Promise<void> {
    this.checkDrift(remote);
    await this.lockAndSync(tx);
    this.last = receive(this.last, decodeHlc(remote), this.wallClock(), this.node);
    await this.persist(tx);
  }

  private raise(h: Hlc): void {
    if (compareHlc({ ...h, node: '' }, { ...this.last, node: '' }) > 0) this.last = { ...h, node: this.node };
  }

  private async lockAndSync(tx: DbOrTx): Promise<void> {
    const row = await sql<{
      value: string;
    }>`select value from sync_local_state where key = ${CLOCK_KEY} for update`.execute(tx);
    this.raise(decodeHlc(row.rows[0].value));
  }

  private async persist(tx: DbOrTx): Promise<string> {
    const text = encodeHlc(this.last);
    await tx.updateTable('sync_local_state').set({ value: text }).where('key', '=', CLOCK_KEY).execute();
    return text;
  }
}
