import { Injectable } from '@nestjs/common';
import { Db, InjectDb } from '@lib/db';
import { SharedWriter, USER_METADATA } from '@lib/sync';
import { Page, PageRequest, toPage } from '../http/paging';
import { requireEntry } from '../shared/require-entry';
import { PutMetadataInput } from './metadata.input';
import { MetadataView, metadataView, NO_METADATA } from './metadata.view';

/** User metadata of entries (favorite, hidden, notes): shared, one LWW register per field. */
@Injectable()
export class MetadataService {
  constructor(
    @InjectDb() private readonly db: Db,
    private readonly writer: SharedWriter,
  ) {}

  /** Sets the given fields of an existing entry's metadata; an empty body changes nothing. */
  async put(entryId: string, fields: PutMetadataInput): Promise<MetadataView> {
    return this.writer.transact(async (w) => {
      await requireEntry(w.tx, entryId);
      if (Object.keys(fields).length === 0) {
        const current = await w.load(USER_METADATA, { entry_id: entryId });
        return metadataView(entryId, current?.values ?? NO_METADATA);
      }
      const state = await w.set(USER_METADATA, { entry_id: entryId }, fields);
      return metadataView(entryId, state.values);
    });
  }

  /** An existing entry's metadata; the defaults when nobody annotated it. */
  async get(entryId: string): Promise<MetadataView> {
    await requireEntry(this.db, entryId);
    const row = await this.db
      .selectFrom('user_metadata')
      .select(['favorite', 'hidden', 'notes'])
      .where('entry_id', '=', entryId)
      .executeTakeFirst();
    return metadataView(entryId, row ?? NO_METADATA);
  }

  /** Every entry (held here) that has metadata, by entry id. */
  async list(page: PageRequest): Promise<Page<MetadataView>> {
    let q = this.db
      .selectFrom('user_metadata as m')
      .innerJoin('entries as e', 'e.id', 'm.entry_id')
      .select(['m.entry_id', 'm.favorite', 'm.hidden', 'm.notes'])
      .orderBy('m.entry_id')
      .limit(page.limit + 1);
    if (page.after) q = q.where('m.entry_id', '>', page.after);
    return toPage(
      await q.execute(),
      page,
      (r) => r.entry_id,
      (r) => metadataView(r.entry_id, r),
    );
  }
}
