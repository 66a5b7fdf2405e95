import { Kysely, sql } from 'kysely';

// Frozen. The change feed (GET /sync/events): one row per change committed on this device, local
// or received, in commit order of its statement, numbered by a durable sequence. Statement-level
// triggers with transition tables append them; the pruner keeps the newest 100,000.
//
// model: the model's name; id: its record key (an owned row's id; a shared record's key columns
// joined by ':'); op: 'upsert' or 'delete' (an owned row deleted, a shared record whose delete
// stamp is set or a membership no longer present); origin: the device that made the change (an
// owned row's owner; for shared records, the node of the stamp that changed it last).

interface FeedTable {
  table: string;
  /** SQL of the record key of a row `x`. */
  key: string;
  /** SQL of the op of a new or updated row `x` ('upsert' | 'delete'). */
  op: string;
  /** SQL of the origin of a row `x` (uuid). */
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

function triggers(t: FeedTable): string {
  const append = (rel: string, op: string) =>
    `insert into sync_events (model, id, op, origin) select '${t.table}', ${t.key}, ${op}, ${t.origin} from ${rel} x;`;
  return `
    create function sync_events_${t.table}_upsert() returns trigger language plpgsql as $$
    begin
      ${append('new_rows', t.op)}
      return null;
    end $$;
    create function sync_events_${t.table}_delete() returns trigger language plpgsql as $$
    begin
      ${append('old_rows', "'delete'")}
      return null;
    end $$;
    create trigger sync_events_ins after insert on ${t.table} referencing new table as new_rows
      for each statement execute function sync_events_${t.table}_upsert();
    create trigger sync_events_upd after update on ${t.table} referencing new table as new_rows
      for each statement execute function sync_events_${t.table}_upsert();
    create trigger sync_events_del after delete on ${t.table} referencing old table as old_rows
      for each statement execute function sync_events_${t.table}_delete();`;
}

export async function up(db: Kysely<unknown>): Promise<void> {
  await sql
    .raw(
      `
    create table sync_events (
      seq bigserial primary key,
      model text not null,
      id text not null,
      op text not null,
      origin uuid,
      at timestamptz not null default now()
    );
    ${TABLES.map(triggers).join('\n')}
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
      drop trigger sync_events_ins on ${t.table};
      drop trigger sync_events_upd on ${t.table};
      drop trigger sync_events_del on ${t.table};
      drop function sync_events_${t.table}_upsert(), sync_events_${t.table}_delete();`,
    ).join('\n')}
    drop table sync_events;
  `,
    )
    .execute(db);
}
