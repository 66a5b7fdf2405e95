import { Kysely, sql } from 'kysely';

// Frozen. The change feed numbered in commit order. 20261205000000_change_feed numbered a change
// when its statement ran, so a transaction that committed after a later-numbered one (two backfill
// pages written at once, say) could be passed over for good by a reader that had already gone past
// its numbers. Now a statement's changes wait in sync_events_pending (one row per statement, the
// keys, ops and origins as arrays, made the same way as before) and a deferred trigger numbers
// them at commit, under a transaction-level advisory lock that is released only after the commit
// is visible: whoever reads a number has seen every smaller one that will ever exist. The pending
// rows are deleted in the same step: outside a transaction the table is always empty.

interface FeedTable {
  table: string;
  key: string;
  op: string;
  origin: string;
}

const owned = (table: string): FeedTable => ({ table, key: 'x.id::text', op: "'upsert'", origin: 'x.device_id' });
const node = 'right(x.updated_hlc, 36)::uuid';
const TABLES: FeedTable[] = [
  owned('volumes'),
  owned('locations'),
  owned('entries'),
  {
    table: 'tags',
    key: 'x.id::text',
    op: "case when x.deleted_hlc is null then 'upsert' else 'delete' end",
    origin: node,
  },
  {
    table: 'albums',
    key: 'x.id::text',
    op: "case when x.deleted_hlc is null then 'upsert' else 'delete' end",
    origin: node,
  },
  { table: 'user_metadata', key: 'x.entry_id::text', op: "'upsert'", origin: node },
  {
    table: 'tag_entries',
    key: "x.tag_id::text || ':' || x.entry_id::text",
    op: "case when x.present then 'upsert' else 'delete' end",
    origin: node,
  },
  {
    table: 'album_entries',
    key: "x.album_id::text || ':' || x.entry_id::text",
    op: "case when x.present then 'upsert' else 'delete' end",
    origin: node,
  },
];

/** The advisory lock key that orders the numbering (any constant: only this migration uses it). */
const FEED_LOCK = 727_001;

function functions(t: FeedTable, append: (rel: string, op: string) => string): string {
  return `
    create or replace function sync_events_${t.table}_upsert() returns trigger language plpgsql as $$
    begin
      ${append('new_rows', t.op)}
      return null;
    end $$;
    create or replace function sync_events_${t.table}_delete() returns trigger language plpgsql as $$
    begin
      ${append('old_rows', "'delete'")}
      return null;
    end $$;`;
}

const pending = (t: FeedTable) => (rel: string, op: string) =>
  `insert into sync_events_pending (model, ids, ops, origins)
        select '${t.table}', array_agg((${t.key})::text), array_agg((${op})::text), array_agg((${t.origin})::uuid)
        from ${rel} x having count(*) > 0;`;

const direct = (t: FeedTable) => (rel: string, op: string) =>
  `insert into sync_events (model, id, op, origin) select '${t.table}', ${t.key}, ${op}, ${t.origin} from ${rel} x;`;

export async function up(db: Kysely<unknown>): Promise<void> {
  await sql
    .raw(
      `
    create table sync_events_pending (
      n bigserial primary key,
      model text not null,
      ids text[] not null,
      ops text[] not null,
      origins uuid[] not null
    );
    create function sync_events_number() returns trigger language plpgsql as $$
    begin
      perform pg_advisory_xact_lock(${FEED_LOCK});
      insert into sync_events (seq, model, id, op, origin)
        select nextval(pg_get_serial_sequence('sync_events', 'seq')), new.model, u.id, u.op, u.origin
        from unnest(new.ids, new.ops, new.origins) with ordinality as u(id, op, origin, k) order by u.k;
      delete from sync_events_pending where n = new.n;
      return null;
    end $$;
    create constraint trigger sync_events_number after insert on sync_events_pending
      deferrable initially deferred for each row execute function sync_events_number();
    ${TABLES.map((t) => functions(t, pending(t))).join('\n')}
  `,
    )
    .execute(db);
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql
    .raw(
      `
    ${TABLES.map((t) => functions(t, direct(t))).join('\n')}
    drop trigger sync_events_number on sync_events_pending;
    drop function sync_events_number();
    drop table sync_events_pending;
  `,
    )
    .execute(db);
}
