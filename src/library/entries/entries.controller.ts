import { Body, Controller, Delete, Get, HttpCode, Param, Patch, Post, Query, Res } from '@nestjs/common';
import type { Response } from 'express';
import { parsePageRequest } from '../http/paging';
import { bodyOf, parseInput, parsePatch, uuidParam, uuidQuery } from '../http/validation';
import { EntriesService } from './entries.service';
import { createEntryInput, parseEntryBatch, patchEntryInput } from './entry.input';

@Controller('entries')
export class EntriesController {
  constructor(private readonly entries: EntriesService) {}

  /** 201 for a new entry, 200 when the same create is repeated. */
  @Post()
  async create(@Body() body: unknown, @Res({ passthrough: true }) res: Response) {
    const { entry, created } = await this.entries.create(parseInput(createEntryInput, bodyOf(body)));
    res.status(created ? 201 : 200);
    return entry;
  }

  /** Validated entirely before anything is written; 201 when something was new, else 200. */
  @Post('batch')
  async createBatch(@Body() body: unknown, @Res({ passthrough: true }) res: Response) {
    const { items } = parseEntryBatch(bodyOf(body));
    const result = await this.entries.createBatch(items);
    res.status(result.created > 0 ? 201 : 200);
    return result;
  }

  @Get()
  list(@Query() query: Record<string, unknown>) {
    const filter = { deviceId: uuidQuery(query, 'deviceId'), locationId: uuidQuery(query, 'locationId') };
    return this.entries.list(filter, parsePageRequest(query));
  }

  @Get(':id')
  get(@Param('id') id: string) {
    return this.entries.get(uuidParam('id', id));
  }

  @Patch(':id')
  update(@Param('id') id: string, @Body() body: unknown) {
    const entryId = uuidParam('id', id);
    return this.entries.update(entryId, parsePatch(patchEntryInput, body));
  }

  @Delete(':id')
  @HttpCode(204)
  async remove(@Param('id') id: string): Promise<void> {
    await this.entries.remove(uuidParam('id', id));
  }
}
