import { isDeepStrictEqual } from 'node:util';
import { INestApplication, Module, Type } from '@nestjs/common';
import { MODULE_METADATA, PARAMTYPES_METADATA, SELF_DECLARED_DEPS_METADATA } from '@nestjs/common/constants';
import { NestFactory } from '@nestjs/core';
import { ExpressAdapter } from '@nestjs/platform-express';
import { DocumentBuilder, OpenAPIObject, SwaggerModule } from '@nestjs/swagger';
import express from 'express';
import { cleanupOpenApiDoc } from 'nestjs-zod';
import { z } from 'zod';
import { sessionCookieName, isHealthPath } from '../library/http/api-access';
import { describedSchemas } from '../library/http/openapi';
import { LibraryModule } from '../library/library.module';
import { isDeviceRoute } from '../libraries/library-host';
import { MetricsModule } from '../metrics/metrics.module';

type Operation = Record<string, any> & { responses: Record<string, any>; parameters?: any[] };
type PathItem = Record<string, Operation>;

/** The contract changes only by addition (docs/http.md), so the description keeps one version. */
const API_VERSION = '1';

/** The modules whose controllers each library's application serves (AppModule's, but the sync engine's). */
const LIBRARY_MODULES = [LibraryModule, MetricsModule];

/**
 * The OpenAPI 3.0 description of one device's HTTP API (GET /openapi.json), scanned from the route
 * decorators of its own application and of a library's: the library routes appear twice, as the
 * default library's (`/entries`) and under `/libraries/{libraryId}` (`/libraries/{libraryId}/entries`).
 */
export async function buildOpenApiDocument(device: INestApplication, access: DescribedAccess): Promise<OpenAPIObject> {
  const config = new DocumentBuilder()
    .setTitle('Device API')
    .setDescription(
      'One device of a leaderless sync library (docs/http.md). Every library route also exists under ' +
        '/libraries/{libraryId}; without the prefix it addresses the default library.',
    )
    .setVersion(API_VERSION)
    .build();
  const own = SwaggerModule.createDocument(device, config);
  const library = await scanLibraryRoutes(config);

  const paths: Record<string, PathItem> = { ...(own.paths as Record<string, PathItem>) };
  for (const [path, item] of Object.entries(library.paths as Record<string, PathItem>)) {
    if (!isDeviceRoute(path)) addPath(paths, path, item);
    addPath(paths, `/libraries/{libraryId}${path === '/' ? '/' : path}`, inLibrary(item));
  }
  const doc: OpenAPIObject = {
    ...own,
    paths,
    components: { schemas: mergeSchemas(own.components?.schemas ?? {}, library.components?.schemas ?? {}) },
  };
  const clean = cleanupOpenApiDoc(doc, { version: '3.0' });
  for (const [name, schema] of describedSchemas()) {
    const out = clean.components?.schemas?.[name];
    if (out) markClosedObjects(schema, out as Record<string, any>);
  }
  describeAccess(clean, access);
  return clean;
}

/** Who may call the API, as the running device applies it (docs/http.md "Who may call the API"). */
export interface DescribedAccess {
  /** API_TOKEN is set: every route but the health routes needs it. */
  tokenRequired: boolean;
  /** The port the device listens on: its login cookie is named after it. */
  port: number;
}

function addPath(paths: Record<string, PathItem>, path: string, item: PathItem): void {
  if (paths[path]) throw new Error(`OpenAPI: ${path} is both a device route and a library route`);
  paths[path] = item;
}

/**
 * The library's routes, from its controllers in a preview application: Nest reads their route
 * metadata but creates nothing (no database, no engine); the placeholders only satisfy the
 * dependency check of the constructors that are never called. It logs through the device's logger
 * (a `logger` option here would replace the process's logger for every application), once: Nest
 * warns that it runs "in the PREVIEW mode".
 */
async function scanLibraryRoutes(config: Omit<OpenAPIObject, 'paths'>): Promise<OpenAPIObject> {
  const controllers = LIBRARY_MODULES.flatMap(
    (m) => (Reflect.getMetadata(MODULE_METADATA.CONTROLLERS, m) ?? []) as Type[],
  );
  const tokens = new Set<unknown>();
  for (const c of controllers) {
    const declared: unknown[] = Reflect.getMetadata(PARAMTYPES_METADATA, c) ?? [];
    const overridden: { index: number; param: unknown }[] = Reflect.getMetadata(SELF_DECLARED_DEPS_METADATA, c) ?? [];
    const deps = [...declared];
    for (const { index, param } of overridden) deps[index] = param;
    deps.forEach((d) => tokens.add(d));
  }
  @Module({
    controllers,
    providers: [...tokens].map((token) => ({ provide: token as string, useValue: null })),
  })
  class LibraryRoutes {}
  const app = await NestFactory.create(LibraryRoutes, new ExpressAdapter(express()), {
    preview: true,
    abortOnError: false,
  });
  return SwaggerModule.createDocument(app, config);
}

/** A library route under /libraries/{libraryId}: the parameter and the answers of a library that is not there. */
function inLibrary(item: PathItem): PathItem {
  const out: PathItem = {};
  for (const [method, op] of Object.entries(structuredClone(item))) {
    op.operationId = `inLibrary_${op.operationId}`;
    op.parameters = [
      {
        name: 'libraryId',
        in: 'path',
        required: true,
        description: 'a library this device holds',
        schema: { type: 'string', format: 'uuid' },
      },
      ...(op.parameters ?? []),
    ];
    const errors = {
      400: 'libraryId is not a uuid',
      404: 'this device does not hold the library',
      409: 'the library is closed',
    };
    for (const [status, description] of Object.entries(errors)) addError(op, status, description);
    out[method] = op;
  }
  return out;
}

function addError(op: Operation, status: string, description: string): void {
  const existing = op.responses[status];
  if (existing) {
    existing.description = existing.description ? `${existing.description}; or ${description}` : description;
    return;
  }
  op.responses[status] = {
    description,
    content: { 'application/json': { schema: { $ref: '#/components/schemas/ErrorBody' } } },
  };
}

function mergeSchemas(a: Record<string, unknown>, b: Record<string, unknown>): Record<string, any> {
  const out: Record<string, unknown> = { ...a };
  for (const [name, schema] of Object.entries(b)) {
    if (out[name] && !isDeepStrictEqual(out[name], schema)) throw new Error(`OpenAPI: two schemas named ${name}`);
    out[name] = schema;
  }
  return out;
}

/**
 * `additionalProperties: false` where the zod schema is strict (unknown fields are refused, and
 * no answer carries a field the description does not name); `exclusiveMinimum: false` dropped.
 */
function markClosedObjects(schema: z.ZodTypeAny, out: Record<string, any>): void {
  if (out.exclusiveMinimum === false) delete out.exclusiveMinimum;
  if (out.exclusiveMaximum === false) delete out.exclusiveMaximum;
  const def = schema._def;
  if (schema instanceof z.ZodOptional || schema instanceof z.ZodNullable || schema instanceof z.ZodDefault)
    return markClosedObjects(def.innerType, out);
  if (schema instanceof z.ZodEffects) return markClosedObjects(def.schema, out);
  if (schema instanceof z.ZodArray && out.items) return markClosedObjects(def.type, out.items);
  if (schema instanceof z.ZodRecord && typeof out.additionalProperties === 'object')
    return markClosedObjects(def.valueType, out.additionalProperties);
  if (schema instanceof z.ZodObject) {
    if (def.unknownKeys === 'strict') out.additionalProperties = false;
    for (const [key, field] of Object.entries(schema.shape as Record<string, z.ZodTypeAny>))
      if (out.properties?.[key]) markClosedObjects(field, out.properties[key]);
  }
}

/** The API guard (api-guard.ts) in the description: bearer token or login cookie, and its refusals. */
function describeAccess(doc: OpenAPIObject, access: DescribedAccess): void {
  doc.components = {
    ...doc.components,
    securitySchemes: {
      bearer: { type: 'http', scheme: 'bearer', description: 'API_TOKEN' },
      session: {
        type: 'apiKey',
        in: 'cookie',
        name: sessionCookieName(access.port),
        description: "the status page's login cookie (GET /?token=<API_TOKEN>)",
      },
    },
  };
  const token = access.tokenRequired ? [{ bearer: [] }, { session: [] }] : [{ bearer: [] }, { session: [] }, {}];
  for (const [path, item] of Object.entries(doc.paths as Record<string, PathItem>)) {
    for (const op of Object.values(item)) {
      addError(op, '403', 'a foreign Origin, or (without API_TOKEN) a foreign Host');
      if (isHealthPath(path)) {
        op.security = [];
        continue;
      }
      op.security = token;
      addError(op, '401', 'API_TOKEN is set and the request has neither the token nor the login cookie');
    }
  }
}
