import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { Controller, Get, HttpCode, Post } from '@nestjs/common';
import { FastifyAdapter, type NestFastifyApplication } from '@nestjs/platform-fastify';
import { ApiOkResponse, ApiProperty, ApiPropertyOptional, DocumentBuilder, SwaggerModule } from '@nestjs/swagger';
import { Test } from '@nestjs/testing';
import { documentedOkSchema, serializeDocumentedResponses } from './documented-response.serializers.js';

class PartDto {
  @ApiProperty()
  name!: string;

  @ApiProperty()
  score!: number;
}

class ReplyDto {
  @ApiProperty()
  text!: string;

  @ApiProperty({ type: 'string', enum: ['a', 'b', null], nullable: true })
  reason!: 'a' | 'b' | null;

  @ApiProperty({ type: [PartDto] })
  parts!: PartDto[];

  @ApiPropertyOptional({ type: 'integer' })
  retryAfterSeconds?: number;
}

const REPLY = { text: 'a "quoted" answer\n', reason: null, parts: [{ name: 'p › 1', score: 7.31 }] };

@Controller('things')
class ThingsController {
  @Post(':id/reply')
  @HttpCode(200)
  @ApiOkResponse({ type: ReplyDto })
  reply(): object {
    return { ...REPLY, retryAfterSeconds: 3, internalNote: 'not for callers', parts: [{ ...REPLY.parts[0], secret: 'x' }] };
  }

  @Get('plain')
  plain(): object {
    return { anything: { goes: true } };
  }
}

describe('serializeDocumentedResponses', () => {
  let app: NestFastifyApplication;

  beforeAll(async () => {
    const moduleRef = await Test.createTestingModule({ controllers: [ThingsController] }).compile();
    app = moduleRef.createNestApplication<NestFastifyApplication>(new FastifyAdapter(), { logger: false });
    serializeDocumentedResponses(app, SwaggerModule.createDocument(app, new DocumentBuilder().build()));
    await app.init();
    await app.getHttpAdapter().getInstance().ready();
  });

  afterAll(async () => {
    await app?.close();
  });

  const inject = (method: 'GET' | 'POST', url: string) => app.getHttpAdapter().getInstance().inject({ method, url });

  it('sends every documented field of a 200 body as JSON.stringify would, nulls and optional fields included', async () => {
    const response = await inject('POST', '/things/7/reply');
    expect(response.statusCode).toBe(200);
    expect(response.headers['content-type']).toMatch(/^application\/json/);
    expect(response.body).toBe(JSON.stringify({ ...REPLY, retryAfterSeconds: 3 }));
  });

  it('never sends a field the document does not declare, at any depth', async () => {
    const body = (await inject('POST', '/things/7/reply')).json<Record<string, unknown>>();
    expect(body).not.toHaveProperty('internalNote');
    expect(body['parts']).toEqual([{ name: 'p › 1', score: 7.31 }]);
  });

  it('leaves a route without a documented body to JSON.stringify', async () => {
    expect((await inject('GET', '/things/plain')).json()).toEqual({ anything: { goes: true } });
  });
});

describe('documentedOkSchema', () => {
  it('finds a route by its Fastify path and method, with the components its references need', () => {
    const document = {
      openapi: '3.0.0',
      info: { title: 't', version: '1' },
      paths: {
        '/a/{id}': {
          post: {
            responses: { '200': { description: '', content: { 'application/json': { schema: { $ref: '#/components/schemas/X' } } } } },
          },
        },
      },
      components: { schemas: { X: { type: 'object' } } },
    };
    expect(documentedOkSchema(document, '/a/:id', 'POST')).toEqual({
      $ref: '#/components/schemas/X',
      components: { schemas: { X: { type: 'object' } } },
    });
    expect(documentedOkSchema(document, '/a/:id', 'GET')).toBeUndefined();
    expect(documentedOkSchema(document, '/b', 'POST')).toBeUndefined();
  });
});
