import { Body, Controller, Delete, Get, HttpCode, Param, Patch, Post, Query, Res } from '@nestjs/common';
import type { Response } from 'express';
import { parsePageRequest } from '../http/paging';
import { bodyOf, parseInput, parsePatch, uuidParam, uuidQuery } from '../http/validation';
import { createVolumeInput, patchVolumeInput } from './volume.input';
import { VolumesService } from './volumes.service';

@Controller('volumes')
export class VolumesController {
  constructor(private readonly volumes: VolumesService) {}

  /** 201 for a new volume, 200 when the same create is repeated. */
  @Post()
  async create(@Body() body: unknown, @Res({ passthrough: true }) res: Response) {
    const { volume, created } = await this.volumes.create(parseInput(createVolumeInput, bodyOf(body)));
    res.status(created ? 201 : 200);
    return volume;
  }

  @Get()
  list(@Query() query: Record<string, unknown>) {
    return this.volumes.list({ deviceId: uuidQuery(query, 'deviceId') }, parsePageRequest(query));
  }

  @Get(':id')
  get(@Param('id') id: string) {
    return this.volumes.get(uuidParam('id', id));
  }

  @Patch(':id')
  update(@Param('id') id: string, @Body() body: unknown) {
    const volumeId = uuidParam('id', id);
    return this.volumes.update(volumeId, parsePatch(patchVolumeInput, body));
  }

  @Delete(':id')
  @HttpCode(204)
  async remove(@Param('id') id: string): Promise<void> {
    await this.volumes.remove(uuidParam('id', id));
  }
}
