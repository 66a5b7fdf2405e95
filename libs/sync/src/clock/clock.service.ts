import { RawBuilder, sql } from 'kysely';
import { PREPARED, type DbOrTx } from '@lib/db';
import { ClockDriftError } from '../errors';
import { LocalStateRepository } from '../store/local-state.repository';
import { decodeHlc, driftAhead, encodeHlc, Hlc, HLC_ZERO, compareHlc } from './hlc';

const CLOCK_KEY = 'hlc';

/**
 * This device's hybrid logical clock and its persistence. Every stamp is issued inside the
 * transaction that uses it, under a row lock on the persisted value: stamps are persisted with the
 * write they stamp, and the writes of one device commit in stamp order (which lets the owned rows
 * themselves serve as the broadcast log).
 */
export class ClockService {
  private last: Hlc = HLC_ZERO;
  private readonly state = new LocalStateRepository();

  constructor(
    readonly node: string,
    private readonly maxDriftMs: number,
    private readonly wallClock: () => number = Date.now,
  ) {}

  /** Resumes above the last persisted stamp, whatever the wall clock says. */
  async load(db: DbOrTx): Promise<void> {
    await this.state.setMissing(db, { [CLOCK_KEY]: encodeHlc({ ...HLC_ZERO, node: this.node }) });
    const value = await this.state.get(db, CLOCK_KEY);
    if (value) this.raise(decodeHlc(value));
  }

  /** The current clock value (not a new stamp). */
  current(): string {
    return encodeHlc({ ...this.last, node: this.node });
  }

  /** Issues a new stamp inside tx; serializes with every other stamping transaction. */
  async stamp(tx: DbOrTx): Promise<string> {
    return this.advance(tx, null);
  }

  /** Checks a remote stamp against the drift bound; throws ClockDriftError and changes nothing. */
  checkDrift(remote: string): void {
    const ahead = driftAhead(decodeHlc(remote), this.wallClock());
    if (ahead > this.maxDriftMs) throw new ClockDriftError(remote, ahead);
  }

  /** HLC receive rule inside tx: afterwards every local stamp is greater than `remote`. */
  async observe(tx: DbOrTx, remote: string): Promise<void> {
    this.checkDrift(remote);
    await this.advance(tx, remote);
  }

  /**
   * The SQL of one clock step inside a transaction (the persisted stamp locked until commit,
   * advanced by tick, or by receive when `remote` is given), for a caller that folds it into a
   * statement of its own; pass what it returns to advanced().
   */
  advanceSql(remote: string | null): RawBuilder<string> {
    const a = this.advanceArgs(remote);
    return sql<string>`sync_clock_advance(${a.wall}::bigint, ${a.node}::text, ${a.floor}::text, ${a.remote}::text)`;
  }

  /** The arguments of sync_clock_advance for one step (see advanceSql), for a function that steps the clock itself. */
  advanceArgs(remote: string | null): { wall: number; node: string; floor: string; remote: string | null } {
    return { wall: this.wallClock(), node: this.node, floor: encodeHlc(this.last), remote };
  }

  /** Takes in the stamp a statement built with advanceSql returned. */
  advanced(stamp: string): string {
    this.raise(decodeHlc(stamp));
    return stamp;
  }

  /** One clock step in one statement (see the migration clock_function). */
  private async advance(tx: DbOrTx, remote: string | null): Promise<string> {
    const res = await sql<{ stamp: string }>`${sql.raw(PREPARED)}select ${this.advanceSql(remote)} as stamp`.execute(
      tx,
    );
    return this.advanced(res.rows[0].stamp);
  }

  private raise(h: Hlc): void {
    if (compareHlc({ ...h, node: '' }, { ...this.last, node: '' }) > 0) this.last = { ...h, node: this.node };
  }
}
