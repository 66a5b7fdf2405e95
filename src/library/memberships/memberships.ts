import { sql } from 'kysely';
import type { Db } from '@lib/db';
import { ALBUM_ENTRIES, ALBUMS, NotFoundError, SharedModel, SharedWriter, TAG_ENTRIES, TAGS } from '@lib/sync';
import { Page, PageRequest, toPage } from '../http/paging';
import { EntryView, entryView } from '../entries/entry.view';
import { requireLiveRecord } from '../shared/shared-records';
import { requireEntry } from '../shared/require-entry';

/** A set of entries owned by a shared record: the entries of a tag, or of an album. */
export interface MembershipKind {
  /** The record the set belongs to (tags, albums). */
  readonly parent: SharedModel;
  /** The set: one LWW presence register per (parent, entry). */
  readonly set: SharedModel;
  /** The set's column naming the parent. */
  readonly parentColumn: string;
}

export const TAG_MEMBERSHIP: MembershipKind = { parent: TAGS, set: TAG_ENTRIES, parentColumn: 'tag_id' };
export const ALBUM_MEMBERSHIP: MembershipKind = { parent: ALBUMS, set: ALBUM_ENTRIES, parentColumn: 'album_id' };

/**
 * Adding an entry to a set or taking it out is a write of its presence register: repeating either
 * is harmless, and concurrent add/remove on two devices converge on the later one.
 */
export class Memberships {
  constructor(
    private readonly kind: MembershipKind,
    private readonly db: Db,
    private readonly writer: SharedWriter,
  ) {}

  /** Puts the entry in the set (the parent must be live, the entry must exist). */
  add(parentId: string, entryId: string): Promise<void> {
    return this.setPresence(parentId, entryId, true);
  }

  /** Takes the entry out of the set. */
  remove(parentId: string, entryId: string): Promise<void> {
    return this.setPresence(parentId, entryId, false);
  }

  /** The entries in the set (those held here), by entry id. */
  async list(parentId: string, page: PageRequest): Promise<Page<EntryView>> {
    const { parent, set, parentColumn } = this.kind;
    const live =
      await sql`select 1 from ${sql.table(parent.table)} where id = ${parentId} and deleted_hlc is null`.execute(
        this.db,
      );
    if (live.rows.length === 0) throw new NotFoundError(parent.name, parentId);
    const after = page.after ? sql`and e.id > ${page.after}` : sql``;
    const res = await sql<Record<string, unknown> & { id: string }>`select e.* from ${sql.table(set.table)} m
      join entries e on e.id = m.entry_id
      where ${sql.ref(`m.${parentColumn}`)} = ${parentId} and m.present ${after}
      order by e.id limit ${page.limit + 1}`.execute(this.db);
    return toPage(res.rows, page, (r) => r.id, entryView);
  }

  private async setPresence(parentId: string, entryId: string, present: boolean): Promise<void> {
    await this.writer.transact(async (w) => {
      await requireLiveRecord(w, this.kind.parent, parentId);
      await requireEntry(w.tx, entryId);
      await w.set(this.kind.set, { [this.kind.parentColumn]: parentId, entry_id: entryId }, { present });
    });
  }
}
