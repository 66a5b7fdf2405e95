import { z } from 'zod';

/**
 * The registry of syncable models: the one place that says which tables sync, how, with which
 * fields and in which dependency order. Adding a model is one declaration here plus its migration.
 */

const uuid = z.string().uuid();
const isoTimestamp = z.string().datetime({ offset: true });
const hlc = z.string().regex(/^\d{15}-\d{6}-[0-9a-f-]{36}$/, 'expected a clock stamp');
const bytes = z.number().int().nonnegative().max(Number.MAX_SAFE_INTEGER);
const text = (max: number) => z.string().max(max);

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
  readonly parent?: { readonly model: OwnedModelName; readonly column: string; readonly onDelete: 'cascade' | 'set null' };
  /** Validates one row as received from a peer. */
  readonly wire: z.ZodType<Record<string, unknown>>;
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

const ownedTypes = { id: 'uuid', device_id: 'uuid', version: 'text', updated_at: 'timestamptz' };
const ownedBase = { id: uuid, device_id: uuid, version: hlc, updated_at: isoTimestamp };

export const VOLUMES: OwnedModel = {
  kind: 'owned',
  name: 'volumes',
  table: 'volumes',
  order: 0,
  dependsOn: [],
  columns: ['id', 'device_id', 'name', 'mount_point', 'capacity_bytes', 'free_bytes', 'version', 'updated_at'],
  sqlTypes: { ...ownedTypes, name: 'text', mount_point: 'text', capacity_bytes: 'int8', free_bytes: 'int8' },
  timestampColumns: ['updated_at'],
  wire: z
    .object({ ...ownedBase, name: text(1000), mount_point: text(4096), capacity_bytes: bytes, free_bytes: bytes.nullable() })
    .strict(),
};

export const LOCATIONS: OwnedModel = {
  kind: 'owned',
  name: 'locations',
  table: 'locations',
  order: 1,
  dependsOn: ['volumes'],
  parent: { model: 'volumes', column: 'volume_id', onDelete: 'set null' },
  columns: ['id', 'device_id', 'volume_id', 'name', 'path', 'version', 'updated_at'],
  sqlTypes: { ...ownedTypes, volume_id: 'uuid', name: 'text', path: 'text' },
  timestampColumns: ['updated_at'],
  wire: z.object({ ...ownedBase, volume_id: uuid.nullable(), name: text(1000), path: text(4096) }).strict(),
};

export const ENTRIES: OwnedModel = {
  kind: 'owned',
  name: 'entries',
  table: 'entries',
  order: 2,
  dependsOn: ['locations'],
  columns: ['id', 'device_id', 'location_id', 'name', 'path', 'kind', 'size_bytes', 'modified_at', 'version', 'updated_at'],
  sqlTypes: { ...ownedTypes, location_id: 'uuid', name: 'text', path: 'text', kind: 'text', size_bytes: 'int8', modified_at: 'timestamptz' },
  timestampColumns: ['modified_at', 'updated_at'],
  parent: { model: 'locations', column: 'location_id', onDelete: 'cascade' },
  wire: z
    .object({
      ...ownedBase,
      location_id: uuid,
      name: text(1000),
      path: text(4096),
      kind: z.enum(['file', 'dir']),
      size_bytes: bytes,
      modified_at: isoTimestamp,
    })
    .strict(),
};

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
export const MODELS: readonly SyncModel[] = [VOLUMES, LOCATIONS, ENTRIES, TAGS, ALBUMS, USER_METADATA, TAG_ENTRIES, ALBUM_ENTRIES];
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
