import { Kysely, sql } from 'kysely';

// Frozen. The trust model (docs/design.md "Trust"): this device's own key pairs, the library's key
// epochs, its member devices (pinned public keys, signed certificates and removals), and the
// invites this device issued.
export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`
    create table device_keys (
      singleton boolean primary key default true check (singleton),
      sign_private bytea not null,
      sign_public bytea not null,
      box_private bytea not null,
      box_public bytea not null,
      created_at timestamptz not null default now()
    );
    create table library_keys (
      key_id bytea primary key,
      epoch integer not null,
      secret bytea not null,
      recipients uuid[],
      created_by uuid,
      created_at timestamptz not null default now()
    );
    create table library_members (
      device_id uuid primary key,
      sign_public bytea not null,
      box_public bytea not null,
      added_by uuid not null,
      added_at timestamptz not null,
      certificate bytea not null,
      removed_at timestamptz,
      removed_by uuid,
      removal bytea
    );
    create table invites (
      id bytea primary key,
      secret bytea not null,
      created_at timestamptz not null default now(),
      expires_at timestamptz not null,
      used_by uuid,
      used_at timestamptz
    );
  `.execute(db);
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`drop table invites; drop table library_members; drop table library_keys; drop table device_keys;`.execute(
    db,
  );
}
