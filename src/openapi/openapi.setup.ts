import { readFileSync } from 'node:fs';
import type { NestFastifyApplication } from '@nestjs/platform-fastify';
import { DocumentBuilder, SwaggerModule } from '@nestjs/swagger';

export const API_DOCS_PATH = 'docs';
export const API_DOCS_JSON_PATH = 'docs/json';

/** The same file from src/openapi (tests) and dist/openapi (the built app). */
const PACKAGE_JSON = new URL('../../package.json', import.meta.url);

/** Swagger UI at /docs and the OpenAPI document at /docs/json, generated from the controllers and DTOs. */
export function setUpApiDocumentation(app: NestFastifyApplication): void {
  const { version } = JSON.parse(readFileSync(PACKAGE_JSON, 'utf8')) as { version: string };
  const config = new DocumentBuilder()
    .setTitle('Fault-tolerant AI assistant')
    .setDescription(
      'Answers questions from a knowledge base with a HuggingFace-hosted model behind a circuit breaker, falling back to ' +
        'cached answers and knowledge-base excerpts while the model is out.',
    )
    .setVersion(version)
    .build();
  // Built on the first request for it, not at start-up: most processes never serve it.
  SwaggerModule.setup(API_DOCS_PATH, app, () => SwaggerModule.createDocument(app, config), {
    jsonDocumentUrl: API_DOCS_JSON_PATH,
    raw: ['json'],
  });
}
