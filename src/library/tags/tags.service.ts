import { Injectable } from '@nestjs/common';
import { Db, InjectDb } from '@lib/db';
import { SharedWriter, TAGS } from '@lib/sync';
import { Page, PageRequest } from '../http/paging';
import { givenOrNewId } from '../http/validation';
import { SharedRecords } from '../shared/shared-records';
import { CreateTagInput, PatchTagInput } from './tag.input';
import { TagView, tagView } from './tag.view';

/** Tags: shared records, written on any device and merged field by field everywhere. */
@Injectable()
export class TagsService {
  private readonly records: SharedRecords<TagView>;

  constructor(@InjectDb() db: Db, writer: SharedWriter) {
    this.records = new SharedRecords(TAGS, tagView, db, writer);
  }

  create(input: CreateTagInput): Promise<{ record: TagView; created: boolean }> {
    return this.records.create(givenOrNewId(input.id), { name: input.name, color: input.color ?? null });
  }

  update(id: string, patch: PatchTagInput): Promise<TagView> {
    return this.records.update(id, patch);
  }

  remove(id: string): Promise<void> {
    return this.records.remove(id);
  }

  get(id: string): Promise<TagView> {
    return this.records.get(id);
  }

  list(page: PageRequest): Promise<Page<TagView>> {
    return this.records.list(page);
  }
}
