import { Kysely, sql } from 'kysely';

// Frozen. Incremental range digests for anti-entropy (docs/design.md "Anti-entropy").
//
// sync_ranges holds, per (model, owner, bucket), the XOR of the 64-bit hashes of the rows in that
// bucket and their count. A bucket is the first 12 bits of the row's id (its first key column for
// memberships): 4096 buckets. Shared models use the nil owner. Statement-level triggers with
// transition tables record each statement's grouped contribution (XOR of hashes, signed count per
// bucket) in sync_range_deltas, append-only; sync_ranges_fold() folds the deltas into sync_ranges
// (one grouped upsert), and is called before sync_ranges is read. Writers never lock a
// sync_ranges row: transactions writing the same buckets (the backfill's writers, which order
// their commits) would otherwise wait on each other's bucket rows, and could deadlock.
//
// A row's hash covers its canonical synced content: every synced column (owned rows, version
// included), or keys, field values, field clocks and delete stamp (shared records; updated_hlc is
// derived and left out). Timestamps are formatted in UTC explicitly, to the millisecond (the
// precision rows travel with: a finer one would differ forever between owner and peer), and every value goes through
// quote_nullable, so neither the session's TimeZone/DateStyle nor a null can change or alias it.
// The column lists below are this migration's own (frozen); a later migration that changes a
// model's columns redefines its sync_row_hash_<table> function and refills sync_ranges.

const NIL = '00000000-0000-0000-0000-000000000000';

interface TableSpec {
  table: string;
  /** The model name in sync_ranges. */
  model: string;
  /** SQL of the owner of a row `r` (uuid). */
  owner: (r: string) => string;
  /** The column whose first 12 bits choose the bucket. */
  bucketColumn: string;
  /** Hashed columns, in order; timestamps formatted by sync_ts. */
  columns: string[];
  timestamps?: string[];
}

const owned = (table: string, columns: string[], timestamps: string[]): TableSpec => ({
  table,
  model: table,
  owner: (r) => `${r}.device_id`,
  bucketColumn: 'id',
  columns,
  timestamps,
});
const shared = (table: string, columns: string[]): TableSpec => ({
  table,
  model: table,
  owner: () => `'${NIL}'::uuid`,
  bucketColumn: columns[0],
  columns,
});

const TABLES: TableSpec[] = [
  owned(
    'volumes',
    ['id', 'device_id', 'version', 'updated_at', 'name', 'mount_point', 'capacity_bytes', 'free_bytes'],
    ['updated_at'],
  ),
  owned('locations', ['id', 'device_id', 'version', 'updated_at', 'volume_id', 'name', 'path'], ['updated_at']),
  owned(
    'entries',
    ['id', 'device_id', 'version', 'updated_at', 'location_id', 'name', 'path', 'kind', 'size_bytes', 'modified_at'],
    ['updated_at', 'modified_at'],
  ),
  owned('owned_tombstones', ['model', 'id', 'device_id', 'version'], []),
  shared('tags', ['id', 'name', 'color', 'clocks', 'deleted_hlc']),
  shared('albums', ['id', 'name', 'description', 'clocks', 'deleted_hlc']),
  shared('user_metadata', ['entry_id', 'favorite', 'hidden', 'notes', 'clocks']),
  shared('tag_entries', ['tag_id', 'entry_id', 'present', 'clocks']),
  shared('album_entries', ['album_id', 'entry_id', 'present', 'clocks']),
];

function hashFunction(t: TableSpec): string {
  const parts = t.columns.map((c) => {
    if (t.timestamps?.includes(c)) return `quote_nullable(sync_ts(r.${c}))`;
    if (c === 'clocks') return `quote_nullable(r.${c}::text)`;
    return `quote_nullable(r.${c})`;
  });
  return `create function sync_row_hash_${t.table}(r ${t.table}) returns bigint language sql stable as $$
    select sync_h(concat_ws('|', ${parts.join(', ')}))
  $$;`;
}

/** The grouped contribution of the rows of `rel` (sign 1 or -1 on the count). */
function contribution(t: TableSpec, rel: string, sign: 1 | -1): string {
  return `select '${t.model}'::text as model, ${t.owner('x')} as owner, sync_bucket(x.${t.bucketColumn}) as bucket,
      sync_row_hash_${t.table}(x) as h, ${sign} as c from ${rel} x`;
}

/** The grouped contribution of `source`'s rows, in bucket order. */
function grouped(source: string): string {
  return `select model, owner, bucket, bit_xor(h) as hash, sum(c)::int as count from (${source}) s
      group by model, owner, bucket having bit_xor(h) <> 0 or sum(c) <> 0 order by model, owner, bucket`;
}

/** Adds grouped rows to sync_ranges. */
function upsert(groupedSql: string): string {
  return `insert into sync_ranges (model, owner, bucket, hash, count) ${groupedSql}
      on conflict (model, owner, bucket) do update
      set hash = sync_ranges.hash # excluded.hash, count = sync_ranges.count + excluded.count;`;
}

/** Appends a statement's contribution to sync_range_deltas (no conflict, no row lock). */
function delta(source: string): string {
  return `insert into sync_range_deltas (model, owner, bucket, hash, count) ${grouped(source)};`;
}

function triggers(t: TableSpec): string {
  const fn = (event: string, source: string) => `
    create function sync_ranges_${t.table}_${event}() returns trigger language plpgsql as $$
    begin
      ${delta(source)}
      return null;
    end $$;`;
  return `
    ${fn('ins', contribution(t, 'new_rows', 1))}
    ${fn('upd', `${contribution(t, 'old_rows', -1)} union all ${contribution(t, 'new_rows', 1)}`)}
    ${fn('del', contribution(t, 'old_rows', -1))}
    create trigger sync_ranges_ins after insert on ${t.table} referencing new table as new_rows
      for each statement execute function sync_ranges_${t.table}_ins();
    create trigger sync_ranges_upd after update on ${t.table} referencing old table as old_rows new table as new_rows
      for each statement execute function sync_ranges_${t.table}_upd();
    create trigger sync_ranges_del after delete on ${t.table} referencing old table as old_rows
      for each statement execute function sync_ranges_${t.table}_del();`;
}

export async function up(db: Kysely<unknown>): Promise<void> {
  await sql
    .raw(
      `
    create table sync_ranges (
      model text not null,
      owner uuid not null,
      bucket int not null,
      hash bigint not null,
      count int not null,
      primary key (model, owner, bucket)
    );
    create table sync_range_deltas (
      model text not null,
      owner uuid not null,
      bucket int not null,
      hash bigint not null,
      count int not null
    );
    -- folds the committed deltas into sync_ranges; one fold at a time (a fold is a short statement)
    create function sync_ranges_fold() returns void language plpgsql as $$
    begin
      perform pg_advisory_xact_lock(hashtext('sync_ranges_fold'));
      with d as (delete from sync_range_deltas returning model, owner, bucket, hash, count)
      ${upsert(grouped('select model, owner, bucket, hash as h, count as c from d'))}
    end $$;
    create function sync_h(t text) returns bigint language sql immutable strict as $$
      select ('x' || substr(md5(t), 1, 16))::bit(64)::bigint
    $$;
    create function sync_bucket(id uuid) returns int language sql immutable strict as $$
      select ('x' || left(id::text, 3))::bit(12)::int
    $$;
    create function sync_ts(t timestamptz) returns text language sql stable as $$
      select to_char(t at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS')
    $$;
    ${TABLES.map(hashFunction).join('\n')}
    ${TABLES.map(triggers).join('\n')}
    ${TABLES.map((t) => upsert(grouped(contribution(t, t.table, 1)))).join('\n')}
  `,
    )
    .execute(db);
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql
    .raw(
      `
    ${TABLES.map(
      (t) => `
      drop trigger sync_ranges_ins on ${t.table};
      drop trigger sync_ranges_upd on ${t.table};
      drop trigger sync_ranges_del on ${t.table};
      drop function sync_ranges_${t.table}_ins(), sync_ranges_${t.table}_upd(), sync_ranges_${t.table}_del(),
        sync_row_hash_${t.table}(${t.table});`,
    ).join('\n')}
    drop function sync_h(text), sync_bucket(uuid), sync_ts(timestamptz), sync_ranges_fold();
    drop table sync_ranges, sync_range_deltas;
  `,
    )
    .execute(db);
}
