import { applyDecorators } from '@nestjs/common';
import {
  ApiOkResponse,
  ApiOperation,
  ApiProperty,
  ApiPropertyOptional,
  ApiServiceUnavailableResponse,
  type SchemaObject,
} from '@nestjs/swagger';
import type { HealthCheckResult, HealthCheckStatus, HealthIndicatorResult } from '@nestjs/terminus';

type HealthDetails = Record<string, Record<string, unknown>>;

/** One check; `status` plus whatever its indicator reports (breaker state and stats, cache store…). */
const CHECK: SchemaObject = {
  type: 'object',
  required: ['status'],
  properties: { status: { type: 'string', enum: ['up', 'down'] } },
  additionalProperties: true,
};

/** Terminus' body on every health route: checks by name. */
class HealthCheckResultDto implements HealthCheckResult {
  @ApiProperty({ type: 'string', enum: ['ok', 'error'], description: '"ok" with 200, "error" with 503' })
  status!: HealthCheckStatus;

  @ApiPropertyOptional({ type: 'object', additionalProperties: CHECK, description: 'The checks that are up' })
  info?: HealthIndicatorResult;

  @ApiPropertyOptional({ type: 'object', additionalProperties: CHECK, description: 'The checks that are down' })
  error?: HealthIndicatorResult;

  @ApiProperty({ type: 'object', additionalProperties: CHECK, description: 'Every check' })
  details!: HealthIndicatorResult;
}

interface HealthRouteDocs {
  summary: string;
  /** `details` of a healthy answer. */
  up: HealthDetails;
  /** When the route answers 503, and `details` of such an answer; absent for a route that never does. */
  down?: { when: string; details: HealthDetails };
}

function example(status: 'ok' | 'error', details: HealthDetails): Record<string, unknown> {
  const having = (wanted: string): HealthDetails =>
    Object.fromEntries(Object.entries(details).filter(([, entry]) => entry['status'] === wanted));
  return { status, info: having('up'), error: having('down'), details };
}

/** Terminus' own @HealthCheck documentation claims a 503 for every route, with database examples; these say what ours do. */
export function ApiHealthResponses({ summary, up, down }: HealthRouteDocs): MethodDecorator {
  return applyDecorators(
    ApiOperation({ summary }),
    ApiOkResponse({ type: HealthCheckResultDto, description: 'Healthy', example: example('ok', up) }),
    ...(down
      ? [
          ApiServiceUnavailableResponse({
            type: HealthCheckResultDto,
            description: `Unhealthy: ${down.when}`,
            example: example('error', down.details),
          }),
        ]
      : []),
  );
}

const BREAKER_CLOSED = {
  status: 'up',
  state: 'closed',
  // 'fleet' while every replica sharing Redis follows one circuit (CIRCUIT_BREAKER_SHARED); 'replica' otherwise.
  scope: 'fleet',
  enabled: true,
  failures: 0,
  failureThreshold: 5,
  stats: { successes: 12, failures: 0, timeouts: 0, rejects: 0, fallbacks: 0 },
};
const BREAKER_OPEN = {
  ...BREAKER_CLOSED,
  status: 'down',
  state: 'open',
  failures: 5,
  openedAt: '2025-01-01T12:00:00.000Z',
  nextAttemptAt: '2025-01-01T12:00:30.000Z',
  stats: { successes: 12, failures: 5, timeouts: 2, rejects: 3, fallbacks: 8 },
};

/** Example `details` per route, from what the indicators really report. */
export const HEALTH_EXAMPLES = {
  breakerClosed: { huggingface: BREAKER_CLOSED },
  breakerOpen: { huggingface: BREAKER_OPEN },
  everythingUp: {
    huggingface: BREAKER_CLOSED,
    cache: { status: 'up', store: 'redis' },
    upstream: { status: 'up', configured: true, model: 'meta-llama/Llama-3.1-8B-Instruct' },
  },
  somethingDown: {
    huggingface: BREAKER_CLOSED,
    cache: { status: 'down', store: 'redis', message: 'Redis is not connected' },
    upstream: { status: 'up', configured: true, model: 'meta-llama/Llama-3.1-8B-Instruct' },
  },
  ready: { readiness: { status: 'up', phase: 'ready' } },
  draining: { readiness: { status: 'down', phase: 'draining' } },
} satisfies Record<string, HealthDetails>;
