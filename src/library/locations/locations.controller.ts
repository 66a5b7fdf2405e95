import { Body, Controller, Delete, Get, HttpCode, Param, Patch, Post, Query, Res } from '@nestjs/common';
import type { Response } from 'express';
import { parsePageRequest } from '../http/paging';
import { bodyOf, parseInput, parsePatch, uuidParam, uuidQuery } from '../http/validation';
import { createLocationInput, patchLocationInput } from './location.input';
import { LocationsService } from './locations.service';

@Controller('locations')
export class LocationsController {
  constructor(private readonly locations: LocationsService) {}

  /** 201 for a new location, 200 when the same create is repeated. */
  @Post()
  async create(@Body() body: unknown, @Res({ passthrough: true }) res: Response) {
    const { location, created } = await this.locations.create(parseInput(createLocationInput, bodyOf(body)));
    res.status(created ? 201 : 200);
    return location;
  }

  @Get()
  list(@Query() query: Record<string, unknown>) {
    return this.locations.list({ deviceId: uuidQuery(query, 'deviceId') }, parsePageRequest(query));
  }

  @Get(':id')
  get(@Param('id') id: string) {
    return this.locations.get(uuidParam('id', id));
  }

  @Patch(':id')
  update(@Param('id') id: string, @Body() body: unknown) {
    const locationId = uuidParam('id', id);
    return this.locations.update(locationId, parsePatch(patchLocationInput, body));
  }

  @Delete(':id')
  @HttpCode(204)
  async remove(@Param('id') id: string): Promise<void> {
    await this.locations.remove(uuidParam('id', id));
  }
}
