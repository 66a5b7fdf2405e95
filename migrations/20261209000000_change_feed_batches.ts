import { Kysely, sql } from 'kysely';

// Frozen. The change feed stores a statement's changes as one row: sync_event_batches holds the
// changes of one statement of one model, numbered seq..last by the feed's sequence (reserved in
// one step at commit, under the lock that orders the numbering). Numbering a row per change cost
// about as much as the write it recorded; a batch costs one row per statement.
//
// sync_events stays, as a view with one row per change (seq, model, id, op, origin, at), for
// whoever reads it by hand; the feed reads the batches (index on last).

const FEED_LOCK = 727_001;

export async function up(db: Kysely<unknown>): Promise<void> {
  await sql
    .raw(
      `
    create table sync_event_batches (
      seq bigint primary key,
      last bigint not null,
      model text not null,
      ids text[] not null,
      ops text[] not null,
      origins uuid[] not null,
      at timestamptz not null default now()
    );
    create index sync_event_batches_last on sync_event_batches (last);
    create sequence sync_event_seq;
    select setval('sync_event_seq', coalesce((select max(seq) from sync_events), 0) + 1, false);
    insert into sync_event_batches (seq, last, model, ids, ops, origins, at)
      select seq, seq, model, array[id], array[op], array[origin], at from sync_events;
    drop table sync_events;
    create view sync_events as
      select b.seq + u.k - 1 as seq, b.model, u.id, u.op, u.origin, b.at
      from sync_event_batches b, unnest(b.ids, b.ops, b.origins) with ordinality as u(id, op, origin, k);
    create or replace function sync_events_number() returns trigger language plpgsql as $$
    declare
      v_first bigint;
      v_n int := cardinality(new.ids);
    begin
      perform pg_advisory_xact_lock(${FEED_LOCK});
      v_first := nextval('sync_event_seq');
      -- only this function takes numbers, under the lock: the next v_n - 1 are this batch's
      if v_n > 1 then perform setval('sync_event_seq', v_first + v_n - 1); end if;
      insert into sync_event_batches (seq, last, model, ids, ops, origins)
        values (v_first, v_first + v_n - 1, new.model, new.ids, new.ops, new.origins);
      delete from sync_events_pending where n = new.n;
      return null;
    end $$;
  `,
    )
    .execute(db);
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql
    .raw(
      `
    create table sync_events_rows (
      seq bigserial primary key,
      model text not null,
      id text not null,
      op text not null,
      origin uuid,
      at timestamptz not null default now()
    );
    insert into sync_events_rows (seq, model, id, op, origin, at) select seq, model, id, op, origin, at from sync_events;
    select setval(pg_get_serial_sequence('sync_events_rows', 'seq'), coalesce((select max(seq) from sync_events_rows), 0) + 1, false);
    drop view sync_events;
    alter table sync_events_rows rename to sync_events;
    alter sequence sync_events_rows_seq_seq rename to sync_events_seq_seq;
    alter index sync_events_rows_pkey rename to sync_events_pkey;
    create or replace function sync_events_number() returns trigger language plpgsql as $$
    begin
      perform pg_advisory_xact_lock(${FEED_LOCK});
      insert into sync_events (seq, model, id, op, origin)
        select nextval(pg_get_serial_sequence('sync_events', 'seq')), new.model, u.id, u.op, u.origin
        from unnest(new.ids, new.ops, new.origins) with ordinality as u(id, op, origin, k) order by u.k;
      delete from sync_events_pending where n = new.n;
      return null;
    end $$;
    drop table sync_event_batches;
    drop sequence sync_event_seq;
  `,
    )
    .execute(db);
}
