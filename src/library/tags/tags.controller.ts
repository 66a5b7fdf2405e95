import { Body, Controller, Delete, Get, HttpCode, Param, Patch, Post, Query, Res } from '@nestjs/common';
import type { Response } from 'express';
import { parsePageRequest } from '../http/paging';
import { bodyOf, parseInput, parsePatch, uuidParam } from '../http/validation';
import { createTagInput, patchTagInput } from './tag.input';
import { TagsService } from './tags.service';

@Controller('tags')
export class TagsController {
  constructor(private readonly tags: TagsService) {}

  /** 201 for a new tag, 200 when the same create is repeated. */
  @Post()
  async create(@Body() body: unknown, @Res({ passthrough: true }) res: Response) {
    const { record, created } = await this.tags.create(parseInput(createTagInput, bodyOf(body)));
    res.status(created ? 201 : 200);
    return record;
  }

  @Get()
  list(@Query() query: Record<string, unknown>) {
    return this.tags.list(parsePageRequest(query));
  }

  @Get(':id')
  get(@Param('id') id: string) {
    return this.tags.get(uuidParam('id', id));
  }

  @Patch(':id')
  update(@Param('id') id: string, @Body() body: unknown) {
    const tagId = uuidParam('id', id);
    return this.tags.update(tagId, parsePatch(patchTagInput, body));
  }

  @Delete(':id')
  @HttpCode(204)
  async remove(@Param('id') id: string): Promise<void> {
    await this.tags.remove(uuidParam('id', id));
  }
}
