import { DynamicModule, Global, Inject, Module } from '@nestjs/common';
import type { Db } from './database';

export const DB = Symbol('DB');
/** Injects the device's Kysely instance. */
export const InjectDb = (): ParameterDecorator => Inject(DB);

/**
 * Provides an already opened and migrated database. Opening happens before Nest starts (a bad
 * DATABASE_URL ends the process with a one-line message, not a DI stack trace), and closing after
 * Nest has stopped, so that nothing in the application outlives its database.
 */
@Global()
@Module({})
export class DbModule {
  static forDatabase(db: Db): DynamicModule {
    return { module: DbModule, providers: [{ provide: DB, useValue: db }], exports: [DB] };
  }
}
