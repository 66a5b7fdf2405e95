import { Injectable } from '@nestjs/common';
import { Db, InjectDb } from '@lib/db';
import { LOCATIONS, NotFoundError, OwnedWrite, OwnedWriter, VOLUMES } from '@lib/sync';
import { Page, PageRequest, toPage } from '../http/paging';
import { givenOrNewId } from '../http/validation';
import { ContentColumns, createOwnedRow } from '../owned/owned-create';
import { requireOwnReference } from '../owned/owned-references';
import { updateOwnedRow } from '../owned/owned-update';
import { CreateLocationInput, locationColumns, PatchLocationInput } from './location.input';
import { LocationView, locationView } from './location.view';

const CONTENT: ContentColumns = { volume_id: 'text', name: 'text', path: 'text' };

/** A location may sit on one of this device's volumes, or on none. */
async function checkVolume(w: OwnedWrite, volumeId: unknown): Promise<void> {
  if (typeof volumeId === 'string') await requireOwnReference(w, 'volumeId', VOLUMES, volumeId);
}

/** This device's locations (indexed folders); other devices' locations are readable here. */
@Injectable()
export class LocationsService {
  constructor(
    @InjectDb() private readonly db: Db,
    private readonly owned: OwnedWriter,
  ) {}

  async create(input: CreateLocationInput): Promise<{ location: LocationView; created: boolean }> {
    const row = { id: givenOrNewId(input.id), volume_id: null, ...locationColumns(input) };
    const { row: stored, created } = await this.owned.transact((w) =>
      createOwnedRow(w, LOCATIONS, row, CONTENT, () => checkVolume(w, row.volume_id)),
    );
    return { location: locationView(stored), created };
  }

  async update(id: string, patch: PatchLocationInput): Promise<LocationView> {
    const stored = await this.owned.transact((w) =>
      updateOwnedRow(w, LOCATIONS, id, locationColumns(patch), CONTENT, async (next, current) => {
        if (next.volume_id !== current.volume_id) await checkVolume(w, next.volume_id);
      }),
    );
    return locationView(stored);
  }

  /** Deletes the location and, with it, its entries (on every device). */
  async remove(id: string): Promise<void> {
    await this.owned.transact((w) => w.delete(LOCATIONS, id));
  }

  async get(id: string): Promise<LocationView> {
    const row = await this.db.selectFrom('locations').selectAll().where('id', '=', id).executeTakeFirst();
    if (!row) throw new NotFoundError('locations', id);
    return locationView(row);
  }

  async list(filter: { deviceId?: string }, page: PageRequest): Promise<Page<LocationView>> {
    let q = this.db
      .selectFrom('locations')
      .selectAll()
      .orderBy('id')
      .limit(page.limit + 1);
    if (filter.deviceId) q = q.where('device_id', '=', filter.deviceId);
    if (page.after) q = q.where('id', '>', page.after);
    return toPage(await q.execute(), page, (r) => r.id, locationView);
  }
}
