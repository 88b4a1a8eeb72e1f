import type { NestFastifyApplication } from '@nestjs/platform-fastify';
import type { OpenAPIObject } from '@nestjs/swagger';
import type { RouteOptions } from 'fastify';

type JsonSchema = Record<string, unknown>;

/** Fastify's route paths (`/items/:id`) in OpenAPI's spelling (`/items/{id}`). */
function openApiPath(url: string): string {
  return url.replace(/:([A-Za-z0-9_]+)/g, '{$1}');
}

/**
 * The JSON schema of a route's documented 200 body, with the document's component schemas beside it so its
 * `#/components/schemas/…` references resolve; undefined for a route with no documented JSON body.
 */
export function documentedOkSchema(document: OpenAPIObject, url: string, method: string): JsonSchema | undefined {
  const operation = document.paths[openApiPath(url)]?.[method.toLowerCase() as 'get'];
  const ok = operation?.responses['200'] as { content?: Record<string, { schema?: JsonSchema }> } | undefined;
  const schema = ok?.content?.['application/json']?.schema;
  return schema && { ...schema, components: { schemas: document.components?.schemas ?? {} } };
}

/**
 * Each route's 200 body is written by Fastify's schema-based serializer (fast-json-stringify) compiled from the
 * OpenAPI document, not by JSON.stringify: faster, and a field the document does not declare is never sent.
 * Must run before the routes are registered (before `init`/`listen`).
 */
export function serializeDocumentedResponses(app: NestFastifyApplication, document: OpenAPIObject): void {
  app
    .getHttpAdapter()
    .getInstance()
    .addHook('onRoute', (route: RouteOptions) => {
      if (route.schema?.response !== undefined) return;
      const methods = Array.isArray(route.method) ? route.method : [route.method];
      const schemas = methods.map((method) => documentedOkSchema(document, route.url, method)).filter((s) => s !== undefined);
      if (schemas.length === 1) route.schema = { ...route.schema, response: { 200: schemas[0] } };
    });
}
