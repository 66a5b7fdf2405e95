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
import { bodyOf, parseInput, parsePatch, uuidParam, uuidQuery } from '../http/validation';
import { EntriesService } from './entries.service';
import { createEntryInput, entryBatchInput, MAX_BATCH, parseEntryBatch, patchEntryInput } from './entry.input';
import { entryBatchViewSchema, entryViewSchema } from './entry.view';

const Entry = apiSchema('Entry', entryViewSchema);
const EntryPage = apiSchema('EntryPage', pageOf(entryViewSchema));
const CreateEntry = apiSchema('CreateEntry', createEntryInput);
const PatchEntry = apiSchema('PatchEntry', patchEntryInput);
// the batch's fast checks accept exactly what this schema does (test/unit/entry-input.spec.ts)
const EntryBatch = apiSchema('EntryBatch', entryBatchInput);
const EntryBatchResult = apiSchema('EntryBatchResult', entryBatchViewSchema);

@ApiTags('entries')
@Controller('entries')
export class EntriesController {
  constructor(private readonly entries: EntriesService) {}

  /** 201 for a new entry, 200 when the same create is repeated. */
  @Post()
  @ApiCreate(CreateEntry, Entry)
  @ApiErrors(403, 404)
  async create(@Body() body: unknown, @Res({ passthrough: true }) res: Response) {
    const { entry, created } = await this.entries.create(parseInput(createEntryInput, bodyOf(body)));
    res.status(created ? 201 : 200);
    return entry;
  }

  /** Validated entirely before anything is written; 201 when something was new, else 200. */
  @Post('batch')
  @ApiOperation({ summary: `up to ${MAX_BATCH} entries in one transaction: all are stored or none` })
  @ApiJsonBody(EntryBatch)
  @ApiJson(201, EntryBatchResult, 'something was new')
  @ApiJson(200, EntryBatchResult, 'every item was there already')
  @ApiErrors(400, 403, 404, 409)
  async createBatch(@Body() body: unknown, @Res({ passthrough: true }) res: Response) {
    const { items } = parseEntryBatch(bodyOf(body));
    const result = await this.entries.createBatch(items);
    res.status(result.created > 0 ? 201 : 200);
    return result;
  }

  @Get()
  @ApiPage(EntryPage, 'deviceId', 'locationId')
  list(@Query() query: Record<string, unknown>) {
    const filter = { deviceId: uuidQuery(query, 'deviceId'), locationId: uuidQuery(query, 'locationId') };
    return this.entries.list(filter, parsePageRequest(query));
  }

  @Get(':id')
  @ApiUuidParams('id')
  @ApiJson(200, Entry)
  @ApiErrors(404)
  get(@Param('id') id: string) {
    return this.entries.get(uuidParam('id', id));
  }

  @Patch(':id')
  @ApiOperation({ summary: 'changes the fields given (at least one)' })
  @ApiUuidParams('id')
  @ApiJsonBody(PatchEntry)
  @ApiJson(200, Entry)
  @ApiErrors(403, 404)
  update(@Param('id') id: string, @Body() body: unknown) {
    const entryId = uuidParam('id', id);
    return this.entries.update(entryId, parsePatch(patchEntryInput, body));
  }

  @Delete(':id')
  @ApiUuidParams('id')
  @ApiNoContent('deleted')
  @ApiErrors(403, 404)
  @HttpCode(204)
  async remove(@Param('id') id: string): Promise<void> {
    await this.entries.remove(uuidParam('id', id));
  }
}
