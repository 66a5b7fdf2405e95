import { Module } from '@nestjs/common';

/** The library's HTTP API (API.md). */
@Module({ controllers: [], providers: [] })
export class LibraryModule {}
