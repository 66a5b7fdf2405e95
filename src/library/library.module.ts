import { Module } from '@nestjs/common';
import { AlbumsController } from './albums/albums.controller';
import { AlbumsService } from './albums/albums.service';
import { EntriesController } from './entries/entries.controller';
import { EventsController } from './events/events.controller';
import { EntriesService } from './entries/entries.service';
import { LocationsController } from './locations/locations.controller';
import { LocationsService } from './locations/locations.service';
import { MembershipsController } from './memberships/memberships.controller';
import { MembershipsService } from './memberships/memberships.service';
import { MetadataController } from './metadata/metadata.controller';
import { MetadataService } from './metadata/metadata.service';
import { HealthService } from './status/health.service';
import { StatusController } from './status/status.controller';
import { StatusPageController } from './status/status-page.controller';
import { TagsController } from './tags/tags.controller';
import { TagsService } from './tags/tags.service';
import { VolumesController } from './volumes/volumes.controller';
import { VolumesService } from './volumes/volumes.service';

/** The library's HTTP API (docs/http.md): device-owned data, shared data, health and sync state. */
@Module({
  controllers: [
    StatusController,
    StatusPageController,
    EventsController,
    VolumesController,
    LocationsController,
    EntriesController,
    MetadataController,
    TagsController,
    AlbumsController,
    MembershipsController,
  ],
  providers: [
    HealthService,
    VolumesService,
    LocationsService,
    EntriesService,
    MetadataService,
    TagsService,
    AlbumsService,
    MembershipsService,
  ],
})
export class LibraryModule {}
