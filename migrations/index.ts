import type { Migration } from 'kysely';
import * as m20261125000000 from './20261125000000_initial';
import * as m20261126000000 from './20261126000000_peer_watermarks';
import * as m20261202000000 from './20261202000000_trust';
import * as m20261203000000 from './20261203000000_libraries';
import * as m20261204000000 from './20261204000000_anti_entropy';
import * as m20261205000000 from './20261205000000_change_feed';
import * as m20261206000000 from './20261206000000_clock_function';
import * as m20261207000000 from './20261207000000_change_feed_commit_order';
import * as m20261208000000 from './20261208000000_apply_functions';
import * as m20261209000000 from './20261209000000_change_feed_batches';

/** Every migration, in order. Listed statically so the same set runs from ts (tests) and dist. */
export const migrations: Record<string, Migration> = {
  '20261125000000_initial': m20261125000000,
  '20261126000000_peer_watermarks': m20261126000000,
  '20261202000000_trust': m20261202000000,
  '20261203000000_libraries': m20261203000000,
  '20261204000000_anti_entropy': m20261204000000,
  '20261205000000_change_feed': m20261205000000,
  '20261206000000_clock_function': m20261206000000,
  '20261207000000_change_feed_commit_order': m20261207000000,
  '20261208000000_apply_functions': m20261208000000,
  '20261209000000_change_feed_batches': m20261209000000,
};
