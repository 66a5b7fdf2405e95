import { Controller, Delete, Get, HttpCode, Param, Put, Query } from '@nestjs/common';
import { ApiTags } from '@nestjs/swagger';
import { entryViewSchema } from '../entries/entry.view';
import { ApiErrors, ApiNoContent, ApiPage, apiSchema, ApiUuidParams, pageOf } from '../http/openapi';
import { parsePageRequest } from '../http/paging';
import { uuidParam } from '../http/validation';
import { MembershipsService } from './memberships.service';

const EntryPage = apiSchema('EntryPage', pageOf(entryViewSchema));

/** PUT/DELETE /tags/:tagId/entries/:entryId, GET /tags/:tagId/entries, and the same for albums. */
@ApiTags('memberships')
@Controller()
export class MembershipsController {
  constructor(private readonly memberships: MembershipsService) {}

  @Put('tags/:tagId/entries/:entryId')
  @ApiUuidParams('tagId', 'entryId')
  @ApiNoContent('the entry is tagged (repeating is harmless)')
  @ApiErrors(404)
  @HttpCode(204)
  async tagEntry(@Param('tagId') tagId: string, @Param('entryId') entryId: string): Promise<void> {
    await this.memberships.tags.add(uuidParam('tagId', tagId), uuidParam('entryId', entryId));
  }

  @Delete('tags/:tagId/entries/:entryId')
  @ApiUuidParams('tagId', 'entryId')
  @ApiNoContent('the tag is taken off (repeating is harmless)')
  @ApiErrors(404)
  @HttpCode(204)
  async untagEntry(@Param('tagId') tagId: string, @Param('entryId') entryId: string): Promise<void> {
    await this.memberships.tags.remove(uuidParam('tagId', tagId), uuidParam('entryId', entryId));
  }

  @Get('tags/:tagId/entries')
  @ApiUuidParams('tagId')
  @ApiPage(EntryPage)
  @ApiErrors(404)
  taggedEntries(@Param('tagId') tagId: string, @Query() query: Record<string, unknown>) {
    return this.memberships.tags.list(uuidParam('tagId', tagId), parsePageRequest(query));
  }

  @Put('albums/:albumId/entries/:entryId')
  @ApiUuidParams('albumId', 'entryId')
  @ApiNoContent('the entry is in the album (repeating is harmless)')
  @ApiErrors(404)
  @HttpCode(204)
  async addToAlbum(@Param('albumId') albumId: string, @Param('entryId') entryId: string): Promise<void> {
    await this.memberships.albums.add(uuidParam('albumId', albumId), uuidParam('entryId', entryId));
  }

  @Delete('albums/:albumId/entries/:entryId')
  @ApiUuidParams('albumId', 'entryId')
  @ApiNoContent('the entry is out of the album (repeating is harmless)')
  @ApiErrors(404)
  @HttpCode(204)
  async removeFromAlbum(@Param('albumId') albumId: string, @Param('entryId') entryId: string): Promise<void> {
    await this.memberships.albums.remove(uuidParam('albumId', albumId), uuidParam('entryId', entryId));
  }

  @Get('albums/:albumId/entries')
  @ApiUuidParams('albumId')
  @ApiPage(EntryPage)
  @ApiErrors(404)
  albumEntries(@Param('albumId') albumId: string, @Query() query: Record<string, unknown>) {
    return this.memberships.albums.list(uuidParam('albumId', albumId), parsePageRequest(query));
  }
}
