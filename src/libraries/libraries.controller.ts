import { Body, Controller, Delete, Get, Header, HttpCode, Inject, Param, Post, Res } from '@nestjs/common';
import type { Response } from 'express';
import { z } from 'zod';
import { decodeInvite, InvalidInputError } from '@lib/sync';
import { bodyOf, parseInput, uuid } from '../library/http/validation';
import { LibraryHost } from './library-host';

const addInput = z
  .object({
    libraryId: uuid.optional(),
    name: z.string().max(200).optional(),
    key: z.string().optional(),
    invite: z.string().optional(),
  })
  .strict();

function keyOf(text: string | undefined): Buffer | null {
  if (text === undefined) return null;
  const key = Buffer.from(text, 'base64');
  if (!/^[A-Za-z0-9+/]+=*$/.test(text) || key.length !== 32)
    throw new InvalidInputError('key', 'expected base64 of 32 bytes');
  return key;
}

/** The device's libraries (API.md "Libraries"): list, found or join, open, close, leave. */
@Controller('libraries')
export class LibrariesController {
  constructor(@Inject(LibraryHost) private readonly host: LibraryHost) {}

  @Get()
  list() {
    return { items: this.host.list(), nextCursor: null };
  }

  /** 201 with the library once its storage is ready; 200 when the device already held it (it is then open). */
  @Post()
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
  @HttpCode(200)
  open(@Param('libraryId') libraryId: string) {
    return this.host.open(libraryId);
  }

  @Post(':libraryId/close')
  @HttpCode(200)
  close(@Param('libraryId') libraryId: string) {
    return this.host.close(libraryId);
  }

  /** Leaves the library: this device's removal is announced to the members, and its data here deleted. */
  @Delete(':libraryId')
  @HttpCode(200)
  leave(@Param('libraryId') libraryId: string) {
    return this.host.leave(libraryId);
  }
}

/** Prometheus exposition of every open library's metrics, labelled by library. */
@Controller()
export class DeviceMetricsController {
  constructor(@Inject(LibraryHost) private readonly host: LibraryHost) {}

  @Get('metrics')
  @Header('content-type', 'text/plain; version=0.0.4; charset=utf-8')
  scrape(): Promise<string> {
    return this.host.metrics();
  }
}
