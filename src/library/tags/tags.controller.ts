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
import { createTagInput, patchTagInput } from './tag.input';
import { TagsService } from './tags.service';
import { tagViewSchema } from './tag.view';

const Tag = apiSchema('Tag', tagViewSchema);
const TagPage = apiSchema('TagPage', pageOf(tagViewSchema));
const CreateTag = apiSchema('CreateTag', createTagInput);
const PatchTag = apiSchema('PatchTag', patchTagInput);

@ApiTags('tags')
@Controller('tags')
export class TagsController {
  constructor(private readonly tags: TagsService) {}

  /** 201 for a new tag, 200 when the same create is repeated. */
  @Post()
  @ApiCreate(CreateTag, Tag)
  async create(@Body() body: unknown, @Res({ passthrough: true }) res: Response) {
    const { record, created } = await this.tags.create(parseInput(createTagInput, bodyOf(body)));
    res.status(created ? 201 : 200);
    return record;
  }

  @Get()
  @ApiPage(TagPage)
  list(@Query() query: Record<string, unknown>) {
    return this.tags.list(parsePageRequest(query));
  }

  @Get(':id')
  @ApiUuidParams('id')
  @ApiJson(200, Tag)
  @ApiErrors(404)
  get(@Param('id') id: string) {
    return this.tags.get(uuidParam('id', id));
  }

  @Patch(':id')
  @ApiOperation({ summary: 'changes the fields given (at least one)' })
  @ApiUuidParams('id')
  @ApiJsonBody(PatchTag)
  @ApiJson(200, Tag)
  @ApiErrors(404)
  update(@Param('id') id: string, @Body() body: unknown) {
    const tagId = uuidParam('id', id);
    return this.tags.update(tagId, parsePatch(patchTagInput, body));
  }

  @Delete(':id')
  @ApiUuidParams('id')
  @ApiNoContent('deleted')
  @ApiErrors(404)
  @HttpCode(204)
  async remove(@Param('id') id: string): Promise<void> {
    await this.tags.remove(uuidParam('id', id));
  }
}
