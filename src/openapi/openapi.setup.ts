import { readFileSync } from 'node:fs';
import type { NestFastifyApplication } from '@nestjs/platform-fastify';
import { DocumentBuilder, SwaggerModule } from '@nestjs/swagger';
import type { FastifyInstance, onRequestHookHandler } from 'fastify';
import { serializeDocumentedResponses } from './documented-response.serializers.js';

export const API_DOCS_PATH = 'docs';
export const API_DOCS_JSON_PATH = 'docs/json';

/** The same file from src/openapi (tests) and dist/openapi (the built app). */
const PACKAGE_JSON = new URL('../../package.json', import.meta.url);

/**
 * The files of swagger-ui-dist its page loads (the page itself and swagger-ui-init.js are SwaggerModule's own routes).
 * SwaggerModule serves the whole folder under /docs/: its package.json, source maps, the petstore initializer,
 * oauth2-redirect.html; everything there but these is a 404.
 */
const SWAGGER_UI_ASSETS: ReadonlySet<string> = new Set([
  'swagger-ui.css',
  'swagger-ui-bundle.js',
  'swagger-ui-standalone-preset.js',
  'favicon-32x32.png',
  'favicon-16x16.png',
]);

/**
 * The OpenAPI document, generated from the controllers and DTOs, gives each route's response serializers. With
 * `served` (DOCS_ENABLED), Swagger UI at /docs and the document at /docs/json.
 */
export function setUpApiDocumentation(app: NestFastifyApplication, served: boolean): void {
  const { version } = JSON.parse(readFileSync(PACKAGE_JSON, 'utf8')) as { version: string };
  const config = new DocumentBuilder()
    .setTitle('Fault-tolerant AI assistant')
    .setDescription(
      'Answers questions from a knowledge base with a HuggingFace-hosted model behind a circuit breaker, falling back to ' +
        'cached answers and knowledge-base excerpts while the model is out.',
    )
    .setVersion(version)
    // With ASSISTANT_API_KEYS set, the answer routes need a key, sent either way.
    .addBearerAuth({ type: 'http', scheme: 'bearer', description: 'An API key from ASSISTANT_API_KEYS' })
    .addApiKey({ type: 'apiKey', in: 'header', name: 'x-api-key', description: 'An API key from ASSISTANT_API_KEYS' }, 'x-api-key')
    .build();
  // Built at start-up: the routes' response serializers are compiled from it (documented-response.serializers.ts).
  const document = SwaggerModule.createDocument(app, config);
  if (served) {
    serveOnlySwaggerUiAssets(app.getHttpAdapter().getInstance());
    SwaggerModule.setup(API_DOCS_PATH, app, document, { jsonDocumentUrl: API_DOCS_JSON_PATH, raw: ['json'] });
  }
  serializeDocumentedResponses(app, document);
}

/** Swagger UI's static route (@fastify/static's `/docs/*`, registered by SwaggerModule) answers only SWAGGER_UI_ASSETS. */
function serveOnlySwaggerUiAssets(fastify: FastifyInstance): void {
  const staticRoute = `/${API_DOCS_PATH}/*`;
  // The decoded file name, as the route's parameter holds it: `%70ackage.json` is package.json.
  const onlyAssets: onRequestHookHandler = (request, reply, done) => {
    const file = (request.params as Record<string, string | undefined>)['*'] ?? '';
    if (SWAGGER_UI_ASSETS.has(file)) done();
    else reply.callNotFound();
  };
  fastify.addHook('onRoute', (route) => {
    if (route.url !== staticRoute) return;
    route.onRequest = [...(route.onRequest === undefined ? [] : [route.onRequest].flat()), onlyAssets];
  });
}
