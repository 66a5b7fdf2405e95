import type { INestApplication } from '@nestjs/common';
import type { OpenAPIObject } from '@nestjs/swagger';
import { buildOpenApiDocument, DescribedAccess } from './openapi-document';

/**
 * The device's description, built once, on the first request for it (a device that nobody asks
 * pays nothing at start), from the device's application once it exists (attach).
 */
export class OpenApiDocument {
  private app: INestApplication | null = null;
  private access: DescribedAccess | null = null;
  private built: Promise<OpenAPIObject> | null = null;

  constructor(private readonly tokenRequired: boolean) {}

  /** The device's application, listening on `port`. */
  attach(app: INestApplication, port: number): void {
    this.app = app;
    this.access = { tokenRequired: this.tokenRequired, port };
  }

  get(): Promise<OpenAPIObject> {
    const { app, access } = this;
    if (!app || !access) throw new Error('OpenAPI: the device application is not attached');
    this.built ??= buildOpenApiDocument(app, access).catch((e: unknown) => {
      this.built = null;
      throw e;
    });
    return this.built;
  }
}
