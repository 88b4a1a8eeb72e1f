import { beforeEach, describe, expect, it } from '@jest/globals';
import { BadRequestException, type CallHandler, type ExecutionContext } from '@nestjs/common';
import { Test } from '@nestjs/testing';
import { Registry } from 'prom-client';
import { firstValueFrom, type Observable, of, throwError } from 'rxjs';
import type { AssistantAnswerDto } from '../assistant/assistant-answer.dto.js';
import { UpstreamUnavailableError } from '../assistant/assistant.errors.js';
import { AnswerMetrics } from './answer.metrics.js';
import { AnswerMetricsInterceptor } from './answer-metrics.interceptor.js';
import { METRICS_REGISTRY } from './metrics.constants.js';

const CIRCUIT = { name: 'huggingface', state: 'open' } as const;
const ANY_CONTEXT = {} as ExecutionContext;

function handlerOf(result: Observable<AssistantAnswerDto>): CallHandler<AssistantAnswerDto> {
  return { handle: () => result };
}

function answer(overrides: Partial<AssistantAnswerDto>): AssistantAnswerDto {
  return { answer: '…', source: 'llm', degraded: false, fallbackReason: null, excerpts: [], circuit: CIRCUIT, ...overrides };
}

describe('AnswerMetricsInterceptor', () => {
  let registry: Registry;
  let interceptor: AnswerMetricsInterceptor;

  beforeEach(async () => {
    registry = new Registry();
    const moduleRef = await Test.createTestingModule({
      providers: [{ provide: METRICS_REGISTRY, useValue: registry }, AnswerMetrics, AnswerMetricsInterceptor],
    }).compile();
    interceptor = moduleRef.get(AnswerMetricsInterceptor);
  });

  async function answersTotal(): Promise<Record<string, number>> {
    const metric = await registry.getSingleMetric('assistant_answers_total')?.get();
    return Object.fromEntries(
      (metric?.values ?? []).map(({ labels, value }) => [`${String(labels.source)}/${String(labels.fallback_reason)}`, value]),
    );
  }

  it('counts a returned answer by its source, and fallback_reason "none" when there is none', async () => {
    await firstValueFrom(interceptor.intercept(ANY_CONTEXT, handlerOf(of(answer({ source: 'llm' })))));
    await firstValueFrom(
      interceptor.intercept(ANY_CONTEXT, handlerOf(of(answer({ source: 'excerpts', degraded: true, fallbackReason: 'timeout' })))),
    );
    expect(await answersTotal()).toEqual({ 'llm/none': 1, 'excerpts/timeout': 1 });
  });

  it('counts an UpstreamUnavailableError as source "unavailable" with its reason, and rethrows the very same error', async () => {
    const unavailable = new UpstreamUnavailableError('circuit_open', 12, CIRCUIT);
    const thrown = await firstValueFrom(interceptor.intercept(ANY_CONTEXT, handlerOf(throwError(() => unavailable)))).catch(
      (error: unknown) => error,
    );
    expect(thrown).toBe(unavailable);
    expect(await answersTotal()).toEqual({ 'unavailable/circuit_open': 1 });
  });

  it('counts nothing for any other error, which still reaches the caller', async () => {
    const badRequest = new BadRequestException('query must not be empty');
    const thrown = await firstValueFrom(interceptor.intercept(ANY_CONTEXT, handlerOf(throwError(() => badRequest)))).catch(
      (error: unknown) => error,
    );
    expect(thrown).toBe(badRequest);
    expect(await answersTotal()).toEqual({});
  });
});
