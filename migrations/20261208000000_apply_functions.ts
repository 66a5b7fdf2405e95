import { Kysely, sql } from 'kysely';

// Frozen. A peer's message applied in one statement, so that the live path costs one round trip
// (and is its own transaction when run alone; a caller with more to do runs it inside its own).
//
// sync_ensure_peer records a device first heard of in a message (the library is ours).
//
// An owner's state message applied in one statement: sync_apply_state steps the clock
// (when asked), reads the peer's watermark of the owner, refuses ids held under another owner,
// runs the message's writes (statements built by OwnedRepository.applyStatements, each given the
// watermark, whether the owner has tombstones, and the message itself as jsonb), records an unknown owner, and
// raises the watermark when the message continues the owner's stream. Run alone it is one round
// trip and its own transaction; a caller with more to do runs it inside its transaction.
// Ids of another owner abort it with SQLSTATE SY001, the ids in the message; nothing is written.
//
// sync_apply_shared: an origin's shared changes in one statement: the clock stepped, the origin's
// shared watermark read, each model's changes merged field by field (statements built by
// mergeStatement in shared.repository.ts, given the message as jsonb, each returning how many records
// changed and how many edits lost to a newer one, reported per statement), an unknown origin recorded, and the watermark
// raised when the changes continue the origin's log.
export async function up(db: Kysely<unknown>): Promise<void> {
  await sql
    .raw(
      `
    create function sync_ensure_peer(p_id uuid) returns void
    language sql as $$
      insert into devices (id, name, library_id, is_self, online)
        select p_id, p_id::text, coalesce((select d.library_id from devices d where d.is_self limit 1), p_id), false, false
        on conflict (id) do nothing;
    $$;

    create function sync_apply_state(
      p_origin uuid, p_from text, p_to text, p_raise boolean,
      p_wall bigint, p_node text, p_floor text, p_remote text,
      p_foreign text, p_writes text[], p_payload jsonb
    ) returns table (o_stamp text, o_continues boolean, o_known boolean)
    language plpgsql as $$
    declare
      v_stamp text;
      v_known boolean := false;
      v_held text;
      v_shadowed boolean;
      v_foreign text[];
      v_continues boolean;
    begin
      if p_wall is not null then
        v_stamp := sync_clock_advance(p_wall, p_node, p_floor, p_remote);
      end if;
      select true, d.state_watermark into v_known, v_held from devices d where d.id = p_origin;
      v_known := coalesce(v_known, false);
      if p_foreign is not null then
        execute p_foreign into v_foreign;
        if cardinality(v_foreign) > 0 then
          raise exception using errcode = 'SY001', message = array_to_string(v_foreign, ', ');
        end if;
      end if;
      v_shadowed := exists (select 1 from owned_tombstones t where t.device_id = p_origin);
      for i in 1 .. coalesce(array_length(p_writes, 1), 0) loop
        execute p_writes[i] using v_held, v_shadowed, p_payload;
      end loop;
      if not v_known then perform sync_ensure_peer(p_origin); end if;
      v_continues := p_from is null or (v_held is not null and v_held collate "C" >= p_from collate "C");
      if v_continues and p_raise then
        update devices set state_watermark = p_to
          where id = p_origin and (state_watermark is null or state_watermark collate "C" < p_to collate "C");
      end if;
      return query select v_stamp, v_continues, v_known;
    end $$;

    create function sync_apply_shared(
      p_origin uuid, p_prev text, p_last text,
      p_wall bigint, p_node text, p_floor text,
      p_writes text[], p_payload jsonb
    ) returns table (o_stamp text, o_continues boolean, o_known boolean, o_applied bigint[], o_conflicts bigint[])
    language plpgsql as $$
    declare
      v_stamp text;
      v_known boolean := false;
      v_held text;
      v_continues boolean;
      v_applied bigint[] := '{}';
      v_conflicts bigint[] := '{}';
      v_a bigint;
      v_c bigint;
    begin
      v_stamp := sync_clock_advance(p_wall, p_node, p_floor, p_last);
      select true, d.shared_watermark into v_known, v_held from devices d where d.id = p_origin;
      v_known := coalesce(v_known, false);
      for i in 1 .. coalesce(array_length(p_writes, 1), 0) loop
        execute p_writes[i] into v_a, v_c using p_payload;
        v_applied := v_applied || v_a;
        v_conflicts := v_conflicts || v_c;
      end loop;
      if not v_known then perform sync_ensure_peer(p_origin); end if;
      v_continues := p_prev is null or (v_held is not null and v_held collate "C" >= p_prev collate "C");
      if v_continues then
        update devices set shared_watermark = p_last
          where id = p_origin and (shared_watermark is null or shared_watermark collate "C" < p_last collate "C");
      end if;
      return query select v_stamp, v_continues, v_known, v_applied, v_conflicts;
    end $$;`,
    )
    .execute(db);
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql
    .raw(
      `drop function sync_apply_shared(uuid, text, text, bigint, text, text, text[], jsonb);
      drop function sync_apply_state(uuid, text, text, boolean, bigint, text, text, text, text, text[], jsonb);
      drop function sync_ensure_peer(uuid);`,
    )
    .execute(db);
}
