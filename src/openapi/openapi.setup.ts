import { readFileSync } from 'node:fs';
import type { NestFastifyApplication } from '@nestjs/platform-fastify';
import { DocumentBuilder, SwaggerModule } from '@nestjs/swagger';
import { serializeDocumentedResponses } from './documented-response.serializers.js';

export const API_DOCS_PATH = 'docs';
export const API_DOCS_JSON_PATH = 'docs/json';

/** The same file from src/openapi (tests) and dist/openapi (the built app). */
const PACKAGE_JSON = new URL('../../package.json', import.meta.url);

/** Swagger UI at /docs and the OpenAPI document at /docs/json, generated from the controllers and DTOs; bodies written from it. */
export function setUpApiDocumentation(app: NestFastifyApplication): void {
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
  SwaggerModule.setup(API_DOCS_PATH, app, document, { jsonDocumentUrl: API_DOCS_JSON_PATH, raw: ['json'] });
  serializeDocumentedResponses(app, document);
}
