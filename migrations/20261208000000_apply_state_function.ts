import { Kysely, sql } from 'kysely';

// Frozen. An owner's state message applied in one statement: sync_apply_state steps the clock
// (when asked), reads the peer's watermark of the owner, refuses ids held under another owner,
// runs the message's writes (statements built by OwnedRepository.applyStatements, each given the
// watermark, whether the owner has tombstones, and its payload), records an unknown owner, and
// raises the watermark when the message continues the owner's stream. Run alone it is one round
// trip and its own transaction; a caller with more to do runs it inside its transaction.
// Ids of another owner abort it with SQLSTATE SY001, the ids in the message; nothing is written.
export async function up(db: Kysely<unknown>): Promise<void> {
  await sql
    .raw(
      `
    create function sync_apply_state(
      p_origin uuid, p_from text, p_to text, p_raise boolean,
      p_wall bigint, p_node text, p_floor text, p_remote text,
      p_foreign text, p_writes text[], p_payloads text[]
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
        execute p_writes[i] using v_held, v_shadowed, p_payloads[i];
      end loop;
      if not v_known then
        insert into devices (id, name, library_id, is_self, online)
          select p_origin, p_origin::text, coalesce((select d.library_id from devices d where d.is_self limit 1), p_origin), false, false
          on conflict (id) do nothing;
      end if;
      v_continues := p_from is null or (v_held is not null and v_held collate "C" >= p_from collate "C");
      if v_continues and p_raise then
        update devices set state_watermark = p_to
          where id = p_origin and (state_watermark is null or state_watermark collate "C" < p_to collate "C");
      end if;
      return query select v_stamp, v_continues, v_known;
    end $$;`,
    )
    .execute(db);
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql
    .raw(`drop function sync_apply_state(uuid, text, text, boolean, bigint, text, text, text, text, text[], text[])`)
    .execute(db);
}
