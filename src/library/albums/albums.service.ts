import { Injectable } from '@nestjs/common';
import { Db, InjectDb } from '@lib/db';
import { ALBUMS, SharedWriter } from '@lib/sync';
import { Page, PageRequest } from '../http/paging';
import { givenOrNewId } from '../http/validation';
import { SharedRecords } from '../shared/shared-records';
import { CreateAlbumInput, PatchAlbumInput } from './album.input';
import { AlbumView, albumView } from './album.view';

/** Albums: shared records, written on any device and merged field by field everywhere. */
@Injectable()
export class AlbumsService {
  private readonly records: SharedRecords<AlbumView>;

  constructor(@InjectDb() db: Db, writer: SharedWriter) {
    this.records = new SharedRecords(ALBUMS, albumView, db, writer);
  }

  create(input: CreateAlbumInput): Promise<{ record: AlbumView; created: boolean }> {
    return this.records.create(givenOrNewId(input.id), { name: input.name, description: input.description ?? null });
  }

  update(id: string, patch: PatchAlbumInput): Promise<AlbumView> {
    return this.records.update(id, patch);
  }

  remove(id: string): Promise<void> {
    return this.records.remove(id);
  }

  get(id: string): Promise<AlbumView> {
    return this.records.get(id);
  }

  list(page: PageRequest): Promise<Page<AlbumView>> {
    return this.records.list(page);
  }
}
