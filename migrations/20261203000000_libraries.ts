import { Kysely, sql } from 'kysely';

// Frozen. The libraries this device holds (API.md "Libraries"). Read only in the device's root
// schema (`public`, or the root PGlite directory); a library's own schema carries an empty copy.
export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`
    create table device_libraries (
      library_id uuid primary key,
      name text not null default '',
      location text not null unique,
      open boolean not null default true,
      created_at timestamptz not null default now()
    );
  `.execute(db);
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`drop table device_libraries`.execute(db);
}
