import { Body, Controller, Get, Param, Put, Query } from '@nestjs/common';
import { ApiOperation, ApiTags } from '@nestjs/swagger';
import { parsePageRequest } from '../http/paging';
import { ApiErrors, ApiJson, ApiJsonBody, ApiPage, apiSchema, ApiUuidParams, pageOf } from '../http/openapi';
import { bodyOf, parseInput, uuidParam } from '../http/validation';
import { putMetadataInput } from './metadata.input';
import { MetadataService } from './metadata.service';
import { metadataViewSchema } from './metadata.view';

const Metadata = apiSchema('Metadata', metadataViewSchema);
const MetadataPage = apiSchema('MetadataPage', pageOf(metadataViewSchema));
const PutMetadata = apiSchema('PutMetadata', putMetadataInput);

@ApiTags('metadata')
@Controller()
export class MetadataController {
  constructor(private readonly metadata: MetadataService) {}

  @Put('entries/:id/metadata')
  @ApiOperation({ summary: 'sets the fields given; the others are left as they are' })
  @ApiUuidParams('id')
  @ApiJsonBody(PutMetadata)
  @ApiJson(200, Metadata)
  @ApiErrors(404)
  put(@Param('id') id: string, @Body() body: unknown) {
    const entryId = uuidParam('id', id);
    return this.metadata.put(entryId, parseInput(putMetadataInput, bodyOf(body)));
  }

  @Get('entries/:id/metadata')
  @ApiUuidParams('id')
  @ApiJson(200, Metadata, 'defaults (false, false, null) when never set')
  @ApiErrors(404)
  get(@Param('id') id: string) {
    return this.metadata.get(uuidParam('id', id));
  }

  @Get('metadata')
  @ApiPage(MetadataPage)
  list(@Query() query: Record<string, unknown>) {
    return this.metadata.list(parsePageRequest(query));
  }
}
