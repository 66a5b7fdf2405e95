import { Body, Controller, Delete, Get, HttpCode, Param, Patch, Post, Query, Res } from '@nestjs/common';
import { ApiOperation, ApiTags } from '@nestjs/swagger';
import type { Response } from 'express';
import { parsePageRequest } from '../http/paging';
import {
  ApiCreate,
  ApiErrors,
  ApiJson,
  ApiJsonBody,
  ApiNoContent,
  ApiPage,
  apiSchema,
  ApiUuidParams,
  pageOf,
} from '../http/openapi';
import { bodyOf, parseInput, parsePatch, uuidParam } from '../http/validation';
import { createAlbumInput, patchAlbumInput } from './album.input';
import { AlbumsService } from './albums.service';
import { albumViewSchema } from './album.view';

const Album = apiSchema('Album', albumViewSchema);
const AlbumPage = apiSchema('AlbumPage', pageOf(albumViewSchema));
const CreateAlbum = apiSchema('CreateAlbum', createAlbumInput);
const PatchAlbum = apiSchema('PatchAlbum', patchAlbumInput);

@ApiTags('albums')
@Controller('albums')
export class AlbumsController {
  constructor(private readonly albums: AlbumsService) {}

  /** 201 for a new album, 200 when the same create is repeated. */
  @Post()
  @ApiCreate(CreateAlbum, Album)
  async create(@Body() body: unknown, @Res({ passthrough: true }) res: Response) {
    const { record, created } = await this.albums.create(parseInput(createAlbumInput, bodyOf(body)));
    res.status(created ? 201 : 200);
    return record;
  }

  @Get()
  @ApiPage(AlbumPage)
  list(@Query() query: Record<string, unknown>) {
    return this.albums.list(parsePageRequest(query));
  }

  @Get(':id')
  @ApiUuidParams('id')
  @ApiJson(200, Album)
  @ApiErrors(404)
  get(@Param('id') id: string) {
    return this.albums.get(uuidParam('id', id));
  }

  @Patch(':id')
  @ApiOperation({ summary: 'changes the fields given (at least one)' })
  @ApiUuidParams('id')
  @ApiJsonBody(PatchAlbum)
  @ApiJson(200, Album)
  @ApiErrors(404)
  update(@Param('id') id: string, @Body() body: unknown) {
    const albumId = uuidParam('id', id);
    return this.albums.update(albumId, parsePatch(patchAlbumInput, body));
  }

  @Delete(':id')
  @ApiUuidParams('id')
  @ApiNoContent('deleted')
  @ApiErrors(404)
  @HttpCode(204)
  async remove(@Param('id') id: string): Promise<void> {
    await this.albums.remove(uuidParam('id', id));
  }
}
