import { Body, Controller, Get, Param, Put, Query } from '@nestjs/common';
import { parsePageRequest } from '../http/paging';
import { bodyOf, parseInput, uuidParam } from '../http/validation';
import { putMetadataInput } from './metadata.input';
import { MetadataService } from './metadata.service';

@Controller()
export class MetadataController {
  constructor(private readonly metadata: MetadataService) {}

  @Put('entries/:id/metadata')
  put(@Param('id') id: string, @Body() body: unknown) {
    const entryId = uuidParam('id', id);
    return this.metadata.put(entryId, parseInput(putMetadataInput, bodyOf(body)));
  }

  @Get('entries/:id/metadata')
  get(@Param('id') id: string) {
    return this.metadata.get(uuidParam('id', id));
  }

  @Get('metadata')
  list(@Query() query: Record<string, unknown>) {
    return this.metadata.list(parsePageRequest(query));
  }
}
