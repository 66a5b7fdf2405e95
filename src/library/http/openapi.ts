import { applyDecorators } from '@nestjs/common';
import { ApiBody, ApiParam, ApiQuery, ApiResponse } from '@nestjs/swagger';
import { createZodDto, zodV3ToOpenAPI } from 'nestjs-zod';
import { z } from 'zod';
import { errorBodySchema } from './http-error.filter';
import { DEFAULT_LIMIT, MAX_LIMIT } from './paging';
import { uuid } from './validation';

/**
 * The OpenAPI description of a route, from the zod schemas its handler validates with and answers
 * with (docs/http.md "OpenAPI"). Only metadata: the handlers keep validating with parseInput, so
 * what the description says and what a request meets are the same schema, not a copy.
 */

/** A class @nestjs/swagger names in the description, carrying a zod schema (nestjs-zod). */
export type DescribedSchema = ReturnType<typeof createZodDto>;

/** Every named schema of the description, by name: the post-processing reads their zod form. */
const described = new Map<string, { schema: z.ZodTypeAny; dto: DescribedSchema }>();

/** `schema` as a named component of the description (`#/components/schemas/<name>`). */
export function apiSchema(name: string, schema: z.ZodTypeAny): DescribedSchema {
  const existing = described.get(name);
  if (existing?.schema === schema) return existing.dto;
  if (existing) throw new Error(`OpenAPI: two schemas named ${name}`);
  const dto = class extends createZodDto(schema) {};
  Object.defineProperty(dto, 'name', { value: name });
  described.set(name, { schema, dto });
  return dto;
}

/** The zod schema of each named schema of the description. */
export function describedSchemas(): Map<string, z.ZodTypeAny> {
  return new Map([...described].map(([name, { schema }]) => [name, schema]));
}

/** A zod schema as an OpenAPI 3.0 schema object (for parameters, which are not components). */
export function openApiSchemaOf(schema: z.ZodTypeAny): Record<string, unknown> {
  // the same zod v3 classes under another import path: the cast only spares the compiler a deep comparison
  return zodV3ToOpenAPI(schema as never) as Record<string, unknown>;
}

const pages = new WeakMap<z.ZodTypeAny, z.ZodTypeAny>();

/** A page of a list: `{items, nextCursor}` (docs/http.md "Lists"). */
export function pageOf(item: z.ZodTypeAny): z.ZodTypeAny {
  let page = pages.get(item);
  if (!page) pages.set(item, (page = z.object({ items: z.array(item), nextCursor: z.string().nullable() }).strict()));
  return page;
}

export const ErrorBody = apiSchema('ErrorBody', errorBodySchema);

const ERROR_WHEN: Record<number, string> = {
  400: 'invalid input; the message starts with the field',
  401: 'API_TOKEN is set and the request has neither the token nor the login cookie',
  403: "a write to a record another device owns (or a reference to another device's row)",
  404: 'an unknown id or route',
  409: 'a conflicting create: the id exists with another owner or other content, or was deleted',
  503: 'the database does not answer',
};

/** Error answers, each with the API's error body. */
export function ApiErrors(...statuses: number[]) {
  return applyDecorators(
    ...statuses.map((status) => ApiResponse({ status, description: ERROR_WHEN[status] ?? 'error', type: ErrorBody })),
  );
}

/** A JSON answer described by a named schema. */
export function ApiJson(status: number, type: DescribedSchema, description = '') {
  return ApiResponse({ status, description, type });
}

/** A create: the body, 201 for a new record, 200 when the same create is repeated; 400 and 409. */
export function ApiCreate(body: DescribedSchema, result: DescribedSchema) {
  return applyDecorators(
    ApiBody({ type: body }),
    ApiJson(201, result, 'created'),
    ApiJson(200, result, 'the same create repeated: the record as it is'),
    ApiErrors(400, 409),
  );
}

/** A JSON request body, validated with this schema. */
export function ApiJsonBody(body: DescribedSchema, required = true) {
  return ApiBody({ type: body, required });
}

/** Path parameters that must be uuids (400 naming the parameter otherwise). */
export function ApiUuidParams(...names: string[]) {
  return applyDecorators(
    ...names.map((name) => ApiParam({ name, required: true, schema: openApiSchemaOf(uuid) })),
    ApiErrors(400),
  );
}

/** A paged list: `?limit=` and `?cursor=` (parsePageRequest), and optional uuid filters. */
export function ApiPage(list: DescribedSchema, ...uuidFilters: string[]) {
  return applyDecorators(
    ApiQuery({
      name: 'limit',
      required: false,
      schema: { type: 'integer', minimum: 1, maximum: MAX_LIMIT, default: DEFAULT_LIMIT },
    }),
    ApiQuery({
      name: 'cursor',
      required: false,
      description: 'the nextCursor of the previous page (opaque)',
      schema: { type: 'string' },
    }),
    ...uuidFilters.map((name) => ApiQuery({ name, required: false, schema: openApiSchemaOf(uuid) })),
    ApiJson(200, list),
    ApiErrors(400),
  );
}

/** A 200 answer that is not JSON (HTML, Prometheus text, a stream of events). */
export function ApiText(contentType: string, description: string) {
  return ApiResponse({ status: 200, description, content: { [contentType]: { schema: { type: 'string' } } } });
}

/** No content. */
export function ApiNoContent(description = 'done') {
  return ApiResponse({ status: 204, description });
}
