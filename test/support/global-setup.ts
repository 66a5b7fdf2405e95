import { createHash } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Client } from 'pg';
import { Kysely, PostgresDialect } from 'kysely';
import { Pool } from 'pg';
import { findServices } from './services';
import { migrateToLatest } from '../../libs/db/src/database';
import type { Database } from '../../libs/db/src/schema';

/**
 * Once per run: find Postgres and NATS, and build a migrated template database that each test
 * file clones (CREATE DATABASE … TEMPLATE …), the Immich "medium test" pattern.
 */
export default async function globalSetup(): Promise<void> {
  const services = await findServices();
  (globalThis as { __services?: unknown }).__services = services;
  const dir = join(__dirname, '..', '..', 'migrations');
  const hash = createHash('sha1');
  for (const f of readdirSync(dir).sort()) hash.update(f).update(readFileSync(join(dir, f)));
  const template = `sync_test_tpl_${hash.digest('hex').slice(0, 12)}`;

  const admin = new Client({ connectionString: services.pgAdminUrl });
  await admin.connect();
  try {
    const exists = await admin.query('select 1 from pg_database where datname = $1', [template]);
    if (exists.rowCount === 0) {
      const building = `${template}_build_${process.pid}`;
      await admin.query(`drop database if exists "${building}"`);
      await admin.query(`create database "${building}"`);
      const url = new URL(services.pgAdminUrl);
      url.pathname = `/${building}`;
      const db = new Kysely<Database>({
        dialect: new PostgresDialect({ pool: new Pool({ connectionString: url.toString(), max: 1 }) }),
      });
      await migrateToLatest(db);
      await db.destroy();
      // a concurrent run may have won the race; either template is identical
      await admin.query(`alter database "${building}" rename to "${template}"`).catch(async () => {
        await admin.query(`drop database if exists "${building}"`);
      });
    }
  } finally {
    await admin.end();
  }
  process.env.TEST_PG_URL = services.pgAdminUrl;
  process.env.TEST_NATS_URL = services.natsUrl;
  process.env.TEST_PG_TEMPLATE = template;
}
