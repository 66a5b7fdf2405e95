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
import { createLocationInput, patchLocationInput } from './location.input';
import { LocationsService } from './locations.service';
import { locationViewSchema } from './location.view';

const Location = apiSchema('Location', locationViewSchema);
const LocationPage = apiSchema('LocationPage', pageOf(locationViewSchema));
const CreateLocation = apiSchema('CreateLocation', createLocationInput);
const PatchLocation = apiSchema('PatchLocation', patchLocationInput);

@ApiTags('locations')
@Controller('locations')
export class LocationsController {
  constructor(private readonly locations: LocationsService) {}

  /** 201 for a new location, 200 when the same create is repeated. */
  @Post()
  @ApiCreate(CreateLocation, Location)
  @ApiErrors(403, 404)
  async create(@Body() body: unknown, @Res({ passthrough: true }) res: Response) {
    const { location, created } = await this.locations.create(parseInput(createLocationInput, bodyOf(body)));
    res.status(created ? 201 : 200);
    return location;
  }

  @Get()
  @ApiPage(LocationPage, 'deviceId')
  list(@Query() query: Record<string, unknown>) {
    return this.locations.list({ deviceId: uuidQuery(query, 'deviceId') }, parsePageRequest(query));
  }

  @Get(':id')
  @ApiUuidParams('id')
  @ApiJson(200, Location)
  @ApiErrors(404)
  get(@Param('id') id: string) {
    return this.locations.get(uuidParam('id', id));
  }

  @Patch(':id')
  @ApiOperation({ summary: 'changes the fields given (at least one)' })
  @ApiUuidParams('id')
  @ApiJsonBody(PatchLocation)
  @ApiJson(200, Location)
  @ApiErrors(403, 404)
  update(@Param('id') id: string, @Body() body: unknown) {
    const locationId = uuidParam('id', id);
    return this.locations.update(locationId, parsePatch(patchLocationInput, body));
  }

  @Delete(':id')
  @ApiUuidParams('id')
  @ApiNoContent('deleted')
  @ApiErrors(403, 404)
  @HttpCode(204)
  async remove(@Param('id') id: string): Promise<void> {
    await this.locations.remove(uuidParam('id', id));
  }
}
