import { Kysely, sql } from 'kysely';

// Frozen. What every peer reported (in heartbeats) of how far it has applied each owner's owned
// stream and each origin's shared log: tombstones are collected from these, never on a timer.
export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`
    create table peer_watermarks (
      peer_id uuid not null,
      origin_id uuid not null,
      state_watermark text collate "C",
      shared_watermark text collate "C",
      updated_at timestamptz not null default now(),
      primary key (peer_id, origin_id)
    );
  `.execute(db);
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`drop table peer_watermarks`.execute(db);
}
