import { Body, Controller, Delete, Get, Header, HttpCode, Inject, Param, Post, Res } from '@nestjs/common';
import { ApiOperation, ApiParam, ApiTags } from '@nestjs/swagger';
import type { Response } from 'express';
import { z } from 'zod';
import { decodeInvite, InvalidInputError } from '@lib/sync';
import { bodyOf, parseInput, uuid } from '../library/http/validation';
import { ApiErrors, ApiJson, ApiJsonBody, ApiText, apiSchema, openApiSchemaOf, pageOf } from '../library/http/openapi';
import { LibraryHost } from './library-host';
import { leftLibrarySchema, libraryViewSchema } from './library.view';

const addInput = z
  .object({
    libraryId: uuid.optional(),
    name: z.string().max(200).optional(),
    key: z.string().optional(),
    invite: z.string().optional(),
  })
  .strict();

const Library = apiSchema('Library', libraryViewSchema);
const LibraryPage = apiSchema('LibraryPage', pageOf(libraryViewSchema));
const AddLibrary = apiSchema('AddLibrary', addInput);
const LeftLibrary = apiSchema('LeftLibrary', leftLibrarySchema);

/** `:libraryId`: a uuid (400), of a library this device holds (404). */
const ApiLibraryId = () => ApiParam({ name: 'libraryId', required: true, schema: openApiSchemaOf(uuid) });

function keyOf(text: string | undefined): Buffer | null {
  if (text === undefined) return null;
  const key = Buffer.from(text, 'base64');
  if (!/^[A-Za-z0-9+/]+=*$/.test(text) || key.length !== 32)
    throw new InvalidInputError('key', 'expected base64 of 32 bytes');
  return key;
}

/** The device's libraries (API.md "Libraries"): list, found or join, open, close, leave. */
@ApiTags('libraries')
@Controller('libraries')
export class LibrariesController {
  constructor(@Inject(LibraryHost) private readonly host: LibraryHost) {}

  @Get()
  @ApiJson(200, LibraryPage, 'every library of this device (one page: nextCursor is null)')
  list() {
    return { items: this.host.list(), nextCursor: null };
  }

  /** 201 with the library once its storage is ready; 200 when the device already held it (it is then open). */
  @Post()
  @ApiOperation({ summary: 'founds a library (libraryId or nothing), joins with a key, or joins by invite' })
  @ApiJsonBody(AddLibrary, false)
  @ApiJson(201, Library, 'added; its sync goes on in the background (see phase)')
  @ApiJson(200, Library, 'the device held it already; it is open')
  @ApiErrors(400)
  async add(@Body() body: unknown, @Res({ passthrough: true }) res: Response) {
    const input = parseInput(addInput, bodyOf(body ?? {}));
    const invite = input.invite === undefined ? null : decodeInvite(input.invite);
    if (input.invite !== undefined && !invite) throw new InvalidInputError('invite', 'not an invite token');
    const { created, library } = await this.host.add({
      libraryId: input.libraryId?.toLowerCase(),
      name: input.name,
      key: keyOf(input.key),
      invite,
    });
    res.status(created ? 201 : 200);
    return library;
  }

  @Post(':libraryId/open')
  @ApiLibraryId()
  @ApiJson(200, Library)
  @ApiErrors(400, 404)
  @HttpCode(200)
  open(@Param('libraryId') libraryId: string) {
    return this.host.open(libraryId);
  }

  @Post(':libraryId/close')
  @ApiOperation({ summary: "stops the library's sync gracefully; its routes answer 409 until it is opened" })
  @ApiLibraryId()
  @ApiJson(200, Library)
  @ApiErrors(400, 404)
  @HttpCode(200)
  close(@Param('libraryId') libraryId: string) {
    return this.host.close(libraryId);
  }

  /** Leaves the library: this device's removal is announced to the members, and its data here deleted. */
  @Delete(':libraryId')
  @ApiOperation({
    summary: 'leaves the library: closes it, removes this device from its members, deletes its data here',
  })
  @ApiLibraryId()
  @ApiJson(200, LeftLibrary)
  @ApiErrors(400, 404)
  @HttpCode(200)
  leave(@Param('libraryId') libraryId: string) {
    return this.host.leave(libraryId);
  }
}

/** Prometheus exposition of every open library's metrics, labelled by library. */
@ApiTags('device')
@Controller()
export class DeviceMetricsController {
  constructor(@Inject(LibraryHost) private readonly host: LibraryHost) {}

  @Get('metrics')
  @ApiOperation({ summary: "every open library's metrics, labelled by library" })
  @ApiText('text/plain; version=0.0.4', 'Prometheus text format')
  @Header('content-type', 'text/plain; version=0.0.4; charset=utf-8')
  scrape(): Promise<string> {
    return this.host.metrics();
  }
}
