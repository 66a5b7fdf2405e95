import { Kysely, sql } from 'kysely';

// Frozen: never edit a migration that has shipped; add a new file instead.
export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`
    create table sync_local_state (
      key text primary key,
      value text not null
    );

    create table devices (
      id uuid primary key,
      name text not null,
      library_id uuid not null,
      is_self boolean not null default false,
      online boolean not null default false,
      last_seen_at timestamptz,
      state_watermark text collate "C",
      shared_watermark text collate "C",
      acked_shared text collate "C",
      acked_state text collate "C",
      removed_at timestamptz,
      registered_at timestamptz not null default now()
    );

    create table volumes (
      id uuid primary key,
      device_id uuid not null,
      name text not null,
      mount_point text not null,
      capacity_bytes bigint not null,
      free_bytes bigint,
      version text collate "C" not null,
      updated_at timestamptz not null
    );
    create index volumes_owner_version on volumes (device_id, version, id);

    create table locations (
      id uuid primary key,
      device_id uuid not null,
      volume_id uuid,
      name text not null,
      path text not null,
      version text collate "C" not null,
      updated_at timestamptz not null
    );
    create index locations_owner_version on locations (device_id, version, id);
    create index locations_volume on locations (volume_id);

    create table entries (
      id uuid primary key,
      device_id uuid not null,
      location_id uuid not null,
      name text not null,
      path text not null,
      kind text not null check (kind in ('file', 'dir')),
      size_bytes bigint not null,
      modified_at timestamptz not null,
      version text collate "C" not null,
      updated_at timestamptz not null
    );
    create index entries_owner_version on entries (device_id, version, id);
    create index entries_location on entries (location_id, id);

    create table owned_tombstones (
      model text not null,
      id uuid not null,
      device_id uuid not null,
      version text collate "C" not null,
      primary key (model, id)
    );
    create index owned_tombstones_owner_version on owned_tombstones (device_id, version, model, id);

    create table tags (
      id uuid primary key,
      name text not null default '',
      color text,
      clocks jsonb not null default '{}',
      updated_hlc text collate "C" not null,
      deleted_hlc text collate "C"
    );

    create table albums (
      id uuid primary key,
      name text not null default '',
      description text,
      clocks jsonb not null default '{}',
      updated_hlc text collate "C" not null,
      deleted_hlc text collate "C"
    );

    create table user_metadata (
      entry_id uuid primary key,
      favorite boolean not null default false,
      hidden boolean not null default false,
      notes text,
      clocks jsonb not null default '{}',
      updated_hlc text collate "C" not null
    );

    create table tag_entries (
      tag_id uuid not null,
      entry_id uuid not null,
      present boolean not null default false,
      clocks jsonb not null default '{}',
      updated_hlc text collate "C" not null,
      primary key (tag_id, entry_id)
    );
    create index tag_entries_entry on tag_entries (entry_id);

    create table album_entries (
      album_id uuid not null,
      entry_id uuid not null,
      present boolean not null default false,
      clocks jsonb not null default '{}',
      updated_hlc text collate "C" not null,
      primary key (album_id, entry_id)
    );
    create index album_entries_entry on album_entries (entry_id);

    create table shared_changes (
      hlc text collate "C" primary key,
      model text not null,
      record_key text not null,
      op text not null check (op in ('set', 'delete')),
      fields jsonb not null default '{}',
      published boolean not null default false
    );
    create index shared_changes_unpublished on shared_changes (hlc) where not published;

    create table dead_letters (
      id bigserial primary key,
      received_at timestamptz not null default now(),
      subject text not null,
      origin text,
      reason text not null,
      payload text not null
    );

    create table sync_checkpoints (
      key text primary key,
      value text not null,
      updated_at timestamptz not null default now()
    );
  `.execute(db);
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`
    drop table sync_checkpoints, dead_letters, shared_changes, album_entries, tag_entries, user_metadata,
      albums, tags, owned_tombstones, entries, locations, volumes, devices, sync_local_state;
  `.execute(db);
}
