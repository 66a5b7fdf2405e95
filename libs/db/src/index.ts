export * from './schema';
export * from './database';
export * from './transaction';
export * from './db.module';
export { PGliteDialect } from './pglite-dialect';
export { copyFrom, copyTo } from './copy';
export { PREPARED } from './prepared';
