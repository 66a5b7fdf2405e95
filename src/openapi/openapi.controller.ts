import { dirname, join } from 'node:path';
import { Controller, Get, Header, Inject, NotFoundException, Param, Res } from '@nestjs/common';
import { ApiOperation, ApiResponse, ApiTags } from '@nestjs/swagger';
import type { Response } from 'express';
import { ApiErrors, ApiText } from '../library/http/openapi';
import { OpenApiDocument } from './openapi-document.provider';

/** swagger-ui's files, served by the device itself (no CDN: /docs works offline). */
const SWAGGER_UI_DIR = dirname(require.resolve('swagger-ui-dist/package.json'));
const ASSETS: Record<string, string> = {
  'swagger-ui.css': 'text/css; charset=utf-8',
  'swagger-ui-bundle.js': 'application/javascript; charset=utf-8',
  'favicon-32x32.png': 'image/png',
  'favicon-16x16.png': 'image/png',
};

const DOCS_PAGE = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>Device API</title>
<link rel="stylesheet" href="/docs/swagger-ui.css">
<link rel="icon" type="image/png" href="/docs/favicon-32x32.png">
</head>
<body>
<div id="swagger-ui"></div>
<script src="/docs/swagger-ui-bundle.js"></script>
<script src="/docs/docs.js"></script>
</body>
</html>
`;

/** The page's one script of its own: swagger-ui reading the device's description. */
const DOCS_SCRIPT = `window.ui = SwaggerUIBundle({ url: '/openapi.json', dom_id: '#swagger-ui', deepLinking: true });\n`;

/** Only the page's own files run, and it talks only to this device (as the status page). */
const DOCS_CSP =
  "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; " +
  "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'";

/** GET /openapi.json (the description of every route) and GET /docs (swagger-ui over it). */
@ApiTags('device')
@Controller()
export class OpenApiController {
  constructor(@Inject(OpenApiDocument) private readonly document: OpenApiDocument) {}

  @Get('openapi.json')
  @ApiOperation({ summary: 'this description (OpenAPI 3.0)' })
  @ApiResponse({ status: 200, content: { 'application/json': { schema: { type: 'object' } } } })
  description() {
    return this.document.get();
  }

  @Get('docs')
  @Header('content-type', 'text/html; charset=utf-8')
  @ApiText('text/html', 'the description, browsable (swagger-ui, served by the device itself)')
  page(@Res({ passthrough: true }) res: Response): string {
    res.setHeader('Content-Security-Policy', DOCS_CSP);
    return DOCS_PAGE;
  }

  @Get('docs/:file')
  @ApiOperation({ summary: "the files of GET /docs: swagger-ui's and its start script" })
  @ApiText('application/octet-stream', 'the file')
  @ApiErrors(404)
  asset(@Param('file') file: string, @Res() res: Response): void {
    res.setHeader('Cache-Control', 'public, max-age=3600');
    if (file === 'docs.js') {
      res.type('application/javascript; charset=utf-8').send(DOCS_SCRIPT);
      return;
    }
    const type = Object.prototype.hasOwnProperty.call(ASSETS, file) ? ASSETS[file] : undefined;
    if (!type) throw new NotFoundException(`docs/${file}: no such file`);
    res.type(type).sendFile(join(SWAGGER_UI_DIR, file));
  }
}
