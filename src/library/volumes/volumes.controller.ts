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
import { createVolumeInput, patchVolumeInput } from './volume.input';
import { VolumesService } from './volumes.service';
import { volumeViewSchema } from './volume.view';

const Volume = apiSchema('Volume', volumeViewSchema);
const VolumePage = apiSchema('VolumePage', pageOf(volumeViewSchema));
const CreateVolume = apiSchema('CreateVolume', createVolumeInput);
const PatchVolume = apiSchema('PatchVolume', patchVolumeInput);

@ApiTags('volumes')
@Controller('volumes')
export class VolumesController {
  constructor(private readonly volumes: VolumesService) {}

  /** 201 for a new volume, 200 when the same create is repeated. */
  @Post()
  @ApiCreate(CreateVolume, Volume)
  async create(@Body() body: unknown, @Res({ passthrough: true }) res: Response) {
    const { volume, created } = await this.volumes.create(parseInput(createVolumeInput, bodyOf(body)));
    res.status(created ? 201 : 200);
    return volume;
  }

  @Get()
  @ApiPage(VolumePage, 'deviceId')
  list(@Query() query: Record<string, unknown>) {
    return this.volumes.list({ deviceId: uuidQuery(query, 'deviceId') }, parsePageRequest(query));
  }

  @Get(':id')
  @ApiUuidParams('id')
  @ApiJson(200, Volume)
  @ApiErrors(404)
  get(@Param('id') id: string) {
    return this.volumes.get(uuidParam('id', id));
  }

  @Patch(':id')
  @ApiOperation({ summary: 'changes the fields given (at least one)' })
  @ApiUuidParams('id')
  @ApiJsonBody(PatchVolume)
  @ApiJson(200, Volume)
  @ApiErrors(403, 404)
  update(@Param('id') id: string, @Body() body: unknown) {
    const volumeId = uuidParam('id', id);
    return this.volumes.update(volumeId, parsePatch(patchVolumeInput, body));
  }

  @Delete(':id')
  @ApiUuidParams('id')
  @ApiNoContent('deleted')
  @ApiErrors(403, 404)
  @HttpCode(204)
  async remove(@Param('id') id: string): Promise<void> {
    await this.volumes.remove(uuidParam('id', id));
  }
}
