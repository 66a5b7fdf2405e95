import { randomBytes } from 'node:crypto';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Client } from 'pg';

function env(name: string): string {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is not set: run the tests through jest (its globalSetup finds the services)`);
  return v;
}

export const pgAdminUrl = (): string => env('TEST_PG_URL');
export const natsUrl = (): string => env('TEST_NATS_URL');

const created: string[] = [];

async function createDatabase(prefix: string, template: string | null): Promise<string> {
  const name = `${prefix}_${process.pid}_${randomBytes(4).toString('hex')}`;
  const admin = new Client({ connectionString: pgAdminUrl() });
  await admin.connect();
  try {
    await admin.query(`create database "${name}"${template ? ` template "${template}"` : ''}`);
  } finally {
    await admin.end();
  }
  created.push(name);
  const url = new URL(pgAdminUrl());
  url.pathname = `/${name}`;
  return url.toString();
}

/** A fresh, migrated Postgres database cloned from the run's template; returns its URL. */
export const createTestDatabase = (prefix = 't'): Promise<string> => createDatabase(prefix, env('TEST_PG_TEMPLATE'));

/** An empty Postgres database (no migrations), for testing that a device migrates itself. */
export const createEmptyDatabase = (prefix = 'e'): Promise<string> => createDatabase(prefix, null);

/** Drops every database this test file created. */
export async function dropTestDatabases(): Promise<void> {
  const admin = new Client({ connectionString: pgAdminUrl() });
  await admin.connect();
  try {
    for (const name of created.splice(0)) await admin.query(`drop database if exists "${name}" with (force)`);
  } finally {
    await admin.end();
  }
}

/** A temporary directory for embedded (PGlite) device data. */
export function tempDataDir(prefix = 'device-'): string {
  return mkdtempSync(join(tmpdir(), prefix));
}
