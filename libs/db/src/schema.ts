import type { ColumnType, Generated } from 'kysely';

/** Types of the device database, one interface per table (migrations/ is the source of truth). */

type Timestamp = ColumnType<Date, Date | string, Date | string>;
/** A hybrid logical clock value: fixed-width text that sorts in clock order (collation "C"). */
export type HlcText = string;
export type FieldClocks = Record<string, HlcText>;

export interface SyncLocalStateTable {
  key: string;
  value: string;
}

export interface DevicesTable {
  id: string;
  name: string;
  library_id: string;
  is_self: boolean;
  online: boolean;
  last_seen_at: Timestamp | null;
  /** Highest owner version of this device's owned data applied here contiguously. */
  state_watermark: HlcText | null;
  /** Highest HLC of this device's shared changes applied here. */
  shared_watermark: HlcText | null;
  /** Highest HLC of our shared change log this device has acknowledged. */
  acked_shared: HlcText | null;
  /** Highest version of our owned data this device has acknowledged. */
  acked_state: HlcText | null;
  removed_at: Timestamp | null;
  registered_at: ColumnType<Date, Date | string | undefined, Date | string>;
}

interface OwnedColumns {
  id: string;
  device_id: string;
  version: HlcText;
  updated_at: Timestamp;
}

export interface VolumesTable extends OwnedColumns {
  name: string;
  mount_point: string;
  capacity_bytes: number;
  free_bytes: number | null;
}

export interface LocationsTable extends OwnedColumns {
  volume_id: string | null;
  name: string;
  path: string;
}

export interface EntriesTable extends OwnedColumns {
  location_id: string;
  name: string;
  path: string;
  kind: 'file' | 'dir';
  size_bytes: number;
  modified_at: Timestamp;
}

export interface OwnedTombstonesTable {
  model: string;
  id: string;
  device_id: string;
  version: HlcText;
}

interface SharedColumns {
  clocks: ColumnType<FieldClocks, FieldClocks | string, FieldClocks | string>;
  /** Greatest HLC seen for this record: the synced "last changed" stamp. */
  updated_hlc: HlcText;
}

export interface TagsTable extends SharedColumns {
  id: string;
  name: string;
  color: string | null;
  deleted_hlc: HlcText | null;
}

export interface AlbumsTable extends SharedColumns {
  id: string;
  name: string;
  description: string | null;
  deleted_hlc: HlcText | null;
}

export interface UserMetadataTable extends SharedColumns {
  entry_id: string;
  favorite: boolean;
  hidden: boolean;
  notes: string | null;
}

export interface TagEntriesTable extends SharedColumns {
  tag_id: string;
  entry_id: string;
  present: boolean;
}

export interface AlbumEntriesTable extends SharedColumns {
  album_id: string;
  entry_id: string;
  present: boolean;
}

export interface SharedChangesTable {
  hlc: HlcText;
  model: string;
  record_key: string;
  op: 'set' | 'delete';
  fields: ColumnType<Record<string, unknown>, Record<string, unknown> | string, Record<string, unknown> | string>;
  published: ColumnType<boolean, boolean | undefined, boolean>;
}

export interface DeadLettersTable {
  id: Generated<number>;
  received_at: ColumnType<Date, Date | string | undefined, never>;
  subject: string;
  origin: string | null;
  reason: string;
  payload: string;
}

export interface SyncCheckpointsTable {
  key: string;
  value: string;
  updated_at: ColumnType<Date, Date | string | undefined, Date | string>;
}

export interface PeerWatermarksTable {
  peer_id: string;
  origin_id: string;
  state_watermark: HlcText | null;
  shared_watermark: HlcText | null;
  updated_at: ColumnType<Date, Date | string | undefined, Date | string>;
}

/** This device's own key pairs (one row): Ed25519 to sign, X25519 to receive keys. */
export interface DeviceKeysTable {
  singleton: ColumnType<boolean, boolean | undefined, never>;
  sign_private: Buffer;
  sign_public: Buffer;
  box_private: Buffer;
  box_public: Buffer;
  created_at: ColumnType<Date, Date | string | undefined, never>;
}

/** One epoch of the library key. */
export interface LibraryKeysTable {
  key_id: Buffer;
  epoch: number;
  secret: Buffer;
  /** The members it was sent to when it was made by a rotation; null: the founding or pre-shared key. */
  recipients: string[] | null;
  created_by: string | null;
  created_at: ColumnType<Date, Date | string | undefined, never>;
}

/** A member device of the library, its pinned keys and its signed certificate (and removal). */
export interface LibraryMembersTable {
  device_id: string;
  sign_public: Buffer;
  box_public: Buffer;
  added_by: string;
  added_at: ColumnType<Date, Date | string, Date | string>;
  certificate: Buffer;
  removed_at: ColumnType<Date, Date | string, Date | string> | null;
  removed_by: string | null;
  removal: Buffer | null;
}

/** An invite this device issued. */
export interface InvitesTable {
  id: Buffer;
  secret: Buffer;
  created_at: ColumnType<Date, Date | string | undefined, never>;
  expires_at: ColumnType<Date, Date | string, Date | string>;
  used_by: string | null;
  used_at: ColumnType<Date, Date | string, Date | string> | null;
}

/** device_libraries: the libraries this device holds (root schema only). */
export interface DeviceLibrariesTable {
  library_id: string;
  name: Generated<string>;
  /** `public` (the device's first library), a schema `lib_<hex>`, or a PGlite directory name. */
  location: string;
  open: Generated<boolean>;
  created_at: Generated<Date>;
}

/** Incremental range digests, kept by triggers (migration 20261204000000_anti_entropy). */
export interface SyncRangesTable {
  model: string;
  owner: string;
  bucket: number;
  /** XOR of the bucket's row hashes (int8: read as a string). */
  hash: string;
  count: number;
}

/** What the triggers appended since the last sync_ranges_fold(): same columns, no key. */
export type SyncRangeDeltasTable = SyncRangesTable;

export interface Database {
  device_libraries: DeviceLibrariesTable;
  device_keys: DeviceKeysTable;
  library_keys: LibraryKeysTable;
  library_members: LibraryMembersTable;
  invites: InvitesTable;
  peer_watermarks: PeerWatermarksTable;
  sync_local_state: SyncLocalStateTable;
  devices: DevicesTable;
  volumes: VolumesTable;
  locations: LocationsTable;
  entries: EntriesTable;
  owned_tombstones: OwnedTombstonesTable;
  tags: TagsTable;
  albums: AlbumsTable;
  user_metadata: UserMetadataTable;
  tag_entries: TagEntriesTable;
  album_entries: AlbumEntriesTable;
  shared_changes: SharedChangesTable;
  dead_letters: DeadLettersTable;
  sync_checkpoints: SyncCheckpointsTable;
  sync_ranges: SyncRangesTable;
  sync_range_deltas: SyncRangeDeltasTable;
}
