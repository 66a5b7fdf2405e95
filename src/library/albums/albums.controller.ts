import { Body, Controller, Delete, Get, HttpCode, Param, Patch, Post, Query, Res } from '@nestjs/common';
import type { Response } from 'express';
import { parsePageRequest } from '../http/paging';
import { bodyOf, parseInput, parsePatch, uuidParam } from '../http/validation';
import { createAlbumInput, patchAlbumInput } from './album.input';
import { AlbumsService } from './albums.service';

@Controller('albums')
export class AlbumsController {
  constructor(private readonly albums: AlbumsService) {}

  /** 201 for a new album, 200 when the same create is repeated. */
  @Post()
  async create(@Body() body: unknown, @Res({ passthrough: true }) res: Response) {
    const { record, created } = await this.albums.create(parseInput(createAlbumInput, bodyOf(body)));
    res.status(created ? 201 : 200);
    return record;
  }

  @Get()
  list(@Query() query: Record<string, unknown>) {
    return this.albums.list(parsePageRequest(query));
  }

  @Get(':id')
  get(@Param('id') id: string) {
    return this.albums.get(uuidParam('id', id));
  }

  @Patch(':id')
  update(@Param('id') id: string, @Body() body: unknown) {
    const albumId = uuidParam('id', id);
    return this.albums.update(albumId, parsePatch(patchAlbumInput, body));
  }

  @Delete(':id')
  @HttpCode(204)
  async remove(@Param('id') id: string): Promise<void> {
    await this.albums.remove(uuidParam('id', id));
  }
}
