import { Injectable } from '@nestjs/common';
import { Db, InjectDb } from '@lib/db';
import { InvalidInputError, NotFoundError, OwnedWriter, VOLUMES } from '@lib/sync';
import { Page, PageRequest, toPage } from '../http/paging';
import { givenOrNewId } from '../http/validation';
import { ContentColumns, createOwnedRow } from '../owned/owned-create';
import { updateOwnedRow } from '../owned/owned-update';
import { CreateVolumeInput, PatchVolumeInput, volumeColumns } from './volume.input';
import { VolumeView, volumeView } from './volume.view';

const CONTENT: ContentColumns = { name: 'text', mount_point: 'text', capacity_bytes: 'number', free_bytes: 'number' };

function checkFreeBytes(row: Record<string, unknown>): void {
  const free = row.free_bytes as number | null;
  if (free !== null && free !== undefined && free > Number(row.capacity_bytes)) {
    throw new InvalidInputError('freeBytes', `must not exceed capacityBytes (${row.capacity_bytes})`);
  }
}

/** This device's volumes (disks, mounts); other devices' volumes are readable here. */
@Injectable()
export class VolumesService {
  constructor(
    @InjectDb() private readonly db: Db,
    private readonly owned: OwnedWriter,
  ) {}

  async create(input: CreateVolumeInput): Promise<{ volume: VolumeView; created: boolean }> {
    const row = { id: givenOrNewId(input.id), free_bytes: null, ...volumeColumns(input) };
    checkFreeBytes(row);
    const { row: stored, created } = await this.owned.transact((w) => createOwnedRow(w, VOLUMES, row, CONTENT));
    return { volume: volumeView(stored), created };
  }

  async update(id: string, patch: PatchVolumeInput): Promise<VolumeView> {
    const stored = await this.owned.transact((w) =>
      updateOwnedRow(w, VOLUMES, id, volumeColumns(patch), CONTENT, checkFreeBytes),
    );
    return volumeView(stored);
  }

  /** Deletes the volume; its locations stay, without a volume. */
  async remove(id: string): Promise<void> {
    await this.owned.transact((w) => w.delete(VOLUMES, id));
  }

  async get(id: string): Promise<VolumeView> {
    const row = await this.db.selectFrom('volumes').selectAll().where('id', '=', id).executeTakeFirst();
    if (!row) throw new NotFoundError('volumes', id);
    return volumeView(row);
  }

  async list(filter: { deviceId?: string }, page: PageRequest): Promise<Page<VolumeView>> {
    let q = this.db
      .selectFrom('volumes')
      .selectAll()
      .orderBy('id')
      .limit(page.limit + 1);
    if (filter.deviceId) q = q.where('device_id', '=', filter.deviceId);
    if (page.after) q = q.where('id', '>', page.after);
    return toPage(await q.execute(), page, (r) => r.id, volumeView);
  }
}
