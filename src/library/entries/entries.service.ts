import { Injectable } from '@nestjs/common';
import { Db, InjectDb } from '@lib/db';
import { ENTRIES, LOCATIONS, NotFoundError, OwnedWriter } from '@lib/sync';
import { Page, PageRequest, toPage } from '../http/paging';
import { givenOrNewId } from '../http/validation';
import { createOwnedRow } from '../owned/owned-create';
import { requireOwnReference } from '../owned/owned-references';
import { updateOwnedRow } from '../owned/owned-update';
import { ENTRY_CONTENT, EntryRow, rejectRepeatedIds, writeEntryBatch } from './entry-batch';
import { CreateEntryInput, entryColumns, PatchEntryInput } from './entry.input';
import { EntryView, entryView } from './entry.view';

export interface EntryFilter {
  deviceId?: string;
  locationId?: string;
}

const toRow = (input: CreateEntryInput): EntryRow => entryColumns(input, { id: givenOrNewId(input.id) }) as EntryRow;

/** This device's file index; other devices' entries are readable here. */
@Injectable()
export class EntriesService {
  constructor(
    @InjectDb() private readonly db: Db,
    private readonly owned: OwnedWriter,
  ) {}

  async create(input: CreateEntryInput): Promise<{ entry: EntryView; created: boolean }> {
    const row = toRow(input);
    const { row: stored, created } = await this.owned.transact((w) =>
      createOwnedRow(w, ENTRIES, row, ENTRY_CONTENT, () =>
        requireOwnReference(w, 'locationId', LOCATIONS, row.location_id),
      ),
    );
    return { entry: entryView(stored), created };
  }

  /** Up to 10,000 entries in one transaction: all are stored or none. */
  async createBatch(items: readonly CreateEntryInput[]): Promise<{ items: EntryView[]; created: number }> {
    const rows = items.map(toRow);
    rejectRepeatedIds(rows);
    const clientIds = rows.filter((_, k) => items[k].id !== undefined).map((r) => r.id);
    const result =
      rows.length === 0
        ? { rows: [], created: 0 }
        : await this.owned.transact((w) => writeEntryBatch(w, rows, clientIds));
    return { items: result.rows.map(entryView), created: result.created };
  }

  async update(id: string, patch: PatchEntryInput): Promise<EntryView> {
    const stored = await this.owned.transact((w) =>
      updateOwnedRow(w, ENTRIES, id, entryColumns(patch), ENTRY_CONTENT, async (next, current) => {
        if (next.location_id !== current.location_id)
          await requireOwnReference(w, 'locationId', LOCATIONS, next.location_id as string);
      }),
    );
    return entryView(stored);
  }

  async remove(id: string): Promise<void> {
    await this.owned.transact((w) => w.delete(ENTRIES, id));
  }

  async get(id: string): Promise<EntryView> {
    const row = await this.db.selectFrom('entries').selectAll().where('id', '=', id).executeTakeFirst();
    if (!row) throw new NotFoundError('entries', id);
    return entryView(row);
  }

  async list(filter: EntryFilter, page: PageRequest): Promise<Page<EntryView>> {
    let q = this.db
      .selectFrom('entries')
      .selectAll()
      .orderBy('id')
      .limit(page.limit + 1);
    if (filter.deviceId) q = q.where('device_id', '=', filter.deviceId);
    if (filter.locationId) q = q.where('location_id', '=', filter.locationId);
    if (page.after) q = q.where('id', '>', page.after);
    return toPage(await q.execute(), page, (r) => r.id, entryView);
  }
}
