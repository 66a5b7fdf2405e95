import { Kysely, sql } from 'kysely';

// Frozen. The hybrid logical clock's step in one statement: sync_clock_advance locks the persisted
// stamp (sync_local_state 'hlc'), computes the next one and stores it, so that a transaction
// stamps (or observes a remote stamp) in one round trip and still under the row lock that orders
// the commits of stamping transactions. It is libs/sync/src/clock/hlc.ts's tick (remote null)
// and receive rules, held against them by a property test; `floor` is the process's own last
// stamp (never go below it).
export async function up(db: Kysely<unknown>): Promise<void> {
  await sql
    .raw(
      `
    create function sync_clock_advance(wall bigint, node text, floor text, remote text) returns text
    language plpgsql as $$
    declare
      cur text;
      lp bigint; ll int; rp bigint; rl int; p bigint; l int;
    begin
      select value into cur from sync_local_state where key = 'hlc' for update;
      if cur is null then raise exception 'the clock (sync_local_state hlc) is not initialised'; end if;
      if floor is not null and left(floor, 22) collate "C" > left(cur, 22) collate "C" then cur := floor; end if;
      lp := substr(cur, 1, 15)::bigint;
      ll := substr(cur, 17, 6)::int;
      if remote is null then
        if wall > lp then p := wall; l := 0; else p := lp; l := ll + 1; end if;
      else
        rp := substr(remote, 1, 15)::bigint;
        rl := substr(remote, 17, 6)::int;
        p := greatest(lp, rp, wall);
        if p = lp and p = rp then l := greatest(ll, rl) + 1;
        elsif p = lp then l := ll + 1;
        elsif p = rp then l := rl + 1;
        else l := 0;
        end if;
      end if;
      if l > 999999 then p := p + 1; l := 0; end if;
      cur := lpad(p::text, 15, '0') || '-' || lpad(l::text, 6, '0') || '-' || node;
      update sync_local_state set value = cur where key = 'hlc';
      return cur;
    end $$;`,
    )
    .execute(db);
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql.raw(`drop function sync_clock_advance(bigint, text, text, text)`).execute(db);
}
