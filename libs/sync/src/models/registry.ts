import { z } from 'zod';

/**
 * The registry of syncable models: the one place that says which tables sync, how, with which
 * fields and in which dependency order. Adding a model is one declaration here plus its migration.
 */

import { ColumnSpec, RowValidator, rowValidator, SQL_TYPES } from './row-validator';

const uuid = z.string().uuid();
// Postgres text cannot hold NUL: refused at the boundary like any other bad value
const text = (max: number) =>
  z
    .string()
    .max(max)
    .refine((v) => !v.includes('\u0000'), 'contains a NUL character');

export interface OwnedModel {
  readonly kind: 'owned';
  readonly name: OwnedModelName;
  readonly table: OwnedModelName;
  /** Position in dependency order: parents sort (and so sync) before children of the same version. */
  readonly order: number;
  readonly dependsOn: readonly OwnedModelName[];
  /** Synced columns, in wire order (id, device_id and version included). */
  readonly columns: readonly string[];
  /** Postgres type of every synced column. */
  readonly sqlTypes: Readonly<Record<string, string>>;
  /** Columns of type timestamptz, sent as ISO-8601 text. */
  readonly timestampColumns: readonly string[];
  /**
   * The owned row this one points at. 'cascade': deleted with it, on every device (entries with
   * their location). 'set null': the owner clears the column when the parent goes (a location
   * outlives its volume), which is an ordinary new version of the row.
   */
  readonly parent?: {
    readonly model: OwnedModelName;
    readonly column: string;
    readonly onDelete: 'cascade' | 'set null';
  };
  /** Validates one row as received from a peer. */
  readonly wire: RowValidator;
}

export interface SharedModel {
  readonly kind: 'shared';
  readonly name: SharedModelName;
  readonly table: SharedModelName;
  readonly order: number;
  readonly dependsOn: readonly string[];
  /** Primary key columns; a record key on the wire is their values joined by ':'. */
  readonly keyColumns: readonly string[];
  /** Synced fields (LWW registers), with the value a record has before any write. */
  readonly fields: Readonly<Record<string, { readonly schema: z.ZodTypeAny; readonly initial: unknown }>>;
  /** Whether a delete tombstone exists for this model (memberships use presence instead). */
  readonly deletable: boolean;
}

export type OwnedModelName = 'volumes' | 'locations' | 'entries';
export type SharedModelName = 'tags' | 'albums' | 'user_metadata' | 'tag_entries' | 'album_entries';
export type ModelName = OwnedModelName | SharedModelName;
export type SyncModel = OwnedModel | SharedModel;

const ownedColumns = {
  id: { type: 'uuid' },
  device_id: { type: 'uuid' },
  version: { type: 'hlc' },
  updated_at: { type: 'timestamp' },
} as const;

/** An owned model from its column specifications (the one declaration of its synced columns). */
function owned(
  m: Omit<OwnedModel, 'kind' | 'table' | 'columns' | 'sqlTypes' | 'timestampColumns' | 'wire'> & {
    specs: Record<string, ColumnSpec>;
  },
): OwnedModel {
  const specs = { ...ownedColumns, ...m.specs } as Record<string, ColumnSpec>;
  const { specs: _specs, ...rest } = m;
  return {
    ...rest,
    kind: 'owned',
    table: m.name,
    columns: Object.keys(specs),
    sqlTypes: Object.fromEntries(Object.entries(specs).map(([c, s]) => [c, SQL_TYPES[s.type]])),
    timestampColumns: Object.entries(specs)
      .filter(([, s]) => s.type === 'timestamp')
      .map(([c]) => c),
    wire: rowValidator(specs),
  };
}

export const VOLUMES: OwnedModel = owned({
  name: 'volumes',
  order: 0,
  dependsOn: [],
  specs: {
    name: { type: 'text', max: 1000 },
    mount_point: { type: 'text', max: 4096 },
    capacity_bytes: { type: 'bytes' },
    free_bytes: { type: 'bytes', nullable: true },
  },
});

export const LOCATIONS: OwnedModel = owned({
  name: 'locations',
  order: 1,
  dependsOn: ['volumes'],
  parent: { model: 'volumes', column: 'volume_id', onDelete: 'set null' },
  specs: {
    volume_id: { type: 'uuid', nullable: true },
    name: { type: 'text', max: 1000 },
    path: { type: 'text', max: 4096 },
  },
});

export const ENTRIES: OwnedModel = owned({
  name: 'entries',
  order: 2,
  dependsOn: ['locations'],
  parent: { model: 'locations', column: 'location_id', onDelete: 'cascade' },
  specs: {
    location_id: { type: 'uuid' },
    name: { type: 'text', max: 1000 },
    path: { type: 'text', max: 4096 },
    kind: { type: 'enum', values: ['file', 'dir'] },
    size_bytes: { type: 'bytes' },
    modified_at: { type: 'timestamp' },
  },
});

export const TAGS: SharedModel = {
  kind: 'shared',
  name: 'tags',
  table: 'tags',
  order: 3,
  dependsOn: [],
  keyColumns: ['id'],
  fields: { name: { schema: text(1000), initial: '' }, color: { schema: text(100).nullable(), initial: null } },
  deletable: true,
};

export const ALBUMS: SharedModel = {
  kind: 'shared',
  name: 'albums',
  table: 'albums',
  order: 4,
  dependsOn: [],
  keyColumns: ['id'],
  fields: { name: { schema: text(1000), initial: '' }, description: { schema: text(10000).nullable(), initial: null } },
  deletable: true,
};

export const USER_METADATA: SharedModel = {
  kind: 'shared',
  name: 'user_metadata',
  table: 'user_metadata',
  order: 5,
  dependsOn: ['entries'],
  keyColumns: ['entry_id'],
  fields: {
    favorite: { schema: z.boolean(), initial: false },
    hidden: { schema: z.boolean(), initial: false },
    notes: { schema: text(100000).nullable(), initial: null },
  },
  deletable: false,
};

export const TAG_ENTRIES: SharedModel = {
  kind: 'shared',
  name: 'tag_entries',
  table: 'tag_entries',
  order: 6,
  dependsOn: ['tags', 'entries'],
  keyColumns: ['tag_id', 'entry_id'],
  fields: { present: { schema: z.boolean(), initial: false } },
  deletable: false,
};

export const ALBUM_ENTRIES: SharedModel = {
  kind: 'shared',
  name: 'album_entries',
  table: 'album_entries',
  order: 7,
  dependsOn: ['albums', 'entries'],
  keyColumns: ['album_id', 'entry_id'],
  fields: { present: { schema: z.boolean(), initial: false } },
  deletable: false,
};

/** Every syncable model in dependency order. */
export const MODELS: readonly SyncModel[] = [
  VOLUMES,
  LOCATIONS,
  ENTRIES,
  TAGS,
  ALBUMS,
  USER_METADATA,
  TAG_ENTRIES,
  ALBUM_ENTRIES,
];
export const OWNED_MODELS = MODELS.filter((m): m is OwnedModel => m.kind === 'owned');
export const SHARED_MODELS = MODELS.filter((m): m is SharedModel => m.kind === 'shared');

export function ownedModel(name: string): OwnedModel | undefined {
  return OWNED_MODELS.find((m) => m.name === name);
}
export function sharedModel(name: string): SharedModel | undefined {
  return SHARED_MODELS.find((m) => m.name === name);
}

/** A shared record's key on the wire and in the change log: key column values joined by ':'. */
export function encodeRecordKey(model: SharedModel, row: Record<string, unknown>): string {
  return model.keyColumns.map((c) => String(row[c])).join(':');
}
export function decodeRecordKey(model: SharedModel, key: string): Record<string, string> | null {
  const parts = key.split(':');
  if (parts.length !== model.keyColumns.length || !parts.every((p) => uuid.safeParse(p).success)) return null;
  return Object.fromEntries(model.keyColumns.map((c, i) => [c, parts[i]]));
}
