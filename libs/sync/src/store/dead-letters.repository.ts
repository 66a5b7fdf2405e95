import type { DbOrTx } from '@lib/db';

/** Postgres text cannot hold NUL; a dead letter keeps it visible as an escape. */
const noNul = (s: string): string => s.split('\u0000').join('\\u0000');

/** Messages that were refused at the boundary, kept with the reason for an operator to inspect. */
export class DeadLetterRepository {
  async record(
    db: DbOrTx,
    letter: { subject: string; origin: string | null; reason: string; payload: string },
  ): Promise<void> {
    await db
      .insertInto('dead_letters')
      .values({
        subject: noNul(letter.subject),
        origin: letter.origin,
        reason: noNul(letter.reason),
        payload: noNul(letter.payload.slice(0, 1_000_000)),
      })
      .execute();
  }

  async count(db: DbOrTx): Promise<number> {
    const row = await db
      .selectFrom('dead_letters')
      .select((eb) => eb.fn.countAll<number>().as('n'))
      .executeTakeFirstOrThrow();
    return Number(row.n);
  }
}
