import { Injectable } from '@nestjs/common';
import { Db, InjectDb } from '@lib/db';
import { SharedWriter } from '@lib/sync';
import { ALBUM_MEMBERSHIP, Memberships, TAG_MEMBERSHIP } from './memberships';

/** The entries of tags and of albums. */
@Injectable()
export class MembershipsService {
  readonly tags: Memberships;
  readonly albums: Memberships;

  constructor(@InjectDb() db: Db, writer: SharedWriter) {
    this.tags = new Memberships(TAG_MEMBERSHIP, db, writer);
    this.albums = new Memberships(ALBUM_MEMBERSHIP, db, writer);
  }
}
