import { Controller, Delete, Get, HttpCode, Param, Put, Query } from '@nestjs/common';
import { parsePageRequest } from '../http/paging';
import { uuidParam } from '../http/validation';
import { MembershipsService } from './memberships.service';

/** PUT/DELETE /tags/:tagId/entries/:entryId, GET /tags/:tagId/entries, and the same for albums. */
@Controller()
export class MembershipsController {
  constructor(private readonly memberships: MembershipsService) {}

  @Put('tags/:tagId/entries/:entryId')
  @HttpCode(204)
  async tagEntry(@Param('tagId') tagId: string, @Param('entryId') entryId: string): Promise<void> {
    await this.memberships.tags.add(uuidParam('tagId', tagId), uuidParam('entryId', entryId));
  }

  @Delete('tags/:tagId/entries/:entryId')
  @HttpCode(204)
  async untagEntry(@Param('tagId') tagId: string, @Param('entryId') entryId: string): Promise<void> {
    await this.memberships.tags.remove(uuidParam('tagId', tagId), uuidParam('entryId', entryId));
  }

  @Get('tags/:tagId/entries')
  taggedEntries(@Param('tagId') tagId: string, @Query() query: Record<string, unknown>) {
    return this.memberships.tags.list(uuidParam('tagId', tagId), parsePageRequest(query));
  }

  @Put('albums/:albumId/entries/:entryId')
  @HttpCode(204)
  async addToAlbum(@Param('albumId') albumId: string, @Param('entryId') entryId: string): Promise<void> {
    await this.memberships.albums.add(uuidParam('albumId', albumId), uuidParam('entryId', entryId));
  }

  @Delete('albums/:albumId/entries/:entryId')
  @HttpCode(204)
  async removeFromAlbum(@Param('albumId') albumId: string, @Param('entryId') entryId: string): Promise<void> {
    await this.memberships.albums.remove(uuidParam('albumId', albumId), uuidParam('entryId', entryId));
  }

  @Get('albums/:albumId/entries')
  albumEntries(@Param('albumId') albumId: string, @Query() query: Record<string, unknown>) {
    return this.memberships.albums.list(uuidParam('albumId', albumId), parsePageRequest(query));
  }
}
