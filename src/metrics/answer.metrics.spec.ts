import { beforeEach, describe, expect, it } from '@jest/globals';
import { Test } from '@nestjs/testing';
import { Registry } from 'prom-client';
import type { AnswerListener } from '../assistant/answer-listener.js';
import type { AssistantAnswerDto } from '../assistant/assistant-answer.dto.js';
import { AssistantService } from '../assistant/assistant.service.js';
import { AnswerMetrics } from './answer.metrics.js';
import { METRICS_REGISTRY } from './metrics.constants.js';

const CIRCUIT = { name: 'huggingface', state: 'open' } as const;

function answer(overrides: Partial<AssistantAnswerDto>): AssistantAnswerDto {
  return { answer: '…', source: 'llm', degraded: false, fallbackReason: null, excerpts: [], circuit: CIRCUIT, ...overrides };
}

/** Stands in for AssistantService: the listeners it was given, to tell them what the service would. */
class ObservedAssistant {
  readonly listeners = new Set<AnswerListener>();
  flightsInTheAir = 0;
  observe(listener: AnswerListener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }
  tell(notify: (listener: AnswerListener) => void): void {
    for (const listener of this.listeners) notify(listener);
  }
}

describe('AnswerMetrics, listening to the assistant', () => {
  let registry: Registry;
  let assistant: ObservedAssistant;
  let metrics: AnswerMetrics;

  beforeEach(async () => {
    registry = new Registry();
    assistant = new ObservedAssistant();
    const moduleRef = await Test.createTestingModule({
      providers: [{ provide: METRICS_REGISTRY, useValue: registry }, { provide: AssistantService, useValue: assistant }, AnswerMetrics],
    }).compile();
    await moduleRef.init();
    metrics = moduleRef.get(AnswerMetrics);
  });

  async function answersTotal(): Promise<Record<string, number>> {
    const metric = await registry.getSingleMetric('assistant_answers_total')?.get();
    return Object.fromEntries(
      (metric?.values ?? []).map(({ labels, value }) => [
        `${String(labels.source)}/${String(labels.fallback_reason)}/${String(labels.model)}`,
        value,
      ]),
    );
  }

  it('counts an answer by its source, fallback reason ("none" when there is none) and the model that wrote it', async () => {
    assistant.tell((listener) => listener.answered(answer({ source: 'llm', model: 'org/b' })));
    assistant.tell((listener) => listener.answered(answer({ source: 'excerpts', degraded: true, fallbackReason: 'timeout' })));
    expect(await answersTotal()).toEqual({ 'llm/none/org/b': 1, 'excerpts/timeout/none': 1 });
  });

  it('counts a 503 as source "unavailable" with its reason', async () => {
    assistant.tell((listener) => listener.unavailable('circuit_open'));
    expect(await answersTotal()).toEqual({ 'unavailable/circuit_open/none': 1 });
  });

  it('counts coalesced answers by scope, waits that ran out, and shows the flights in the air', async () => {
    assistant.tell((listener) => listener.coalesced('replica'));
    assistant.tell((listener) => listener.coalesced('replica'));
    assistant.tell((listener) => listener.coalesced('fleet'));
    assistant.tell((listener) => listener.coalesceWaitTimedOut());
    assistant.flightsInTheAir = 2;
    const text = await registry.metrics();
    expect(text).toMatch(/^assistant_coalesced_requests_total\{scope="replica"\} 2$/m);
    expect(text).toMatch(/^assistant_coalesced_requests_total\{scope="fleet"\} 1$/m);
    expect(text).toMatch(/^assistant_coalesce_wait_timeouts_total 1$/m);
    expect(text).toMatch(/^assistant_coalescing_flights 2$/m);
  });

  it('stops listening at shutdown', async () => {
    metrics.onApplicationShutdown();
    assistant.tell((listener) => listener.answered(answer({})));
    expect(assistant.listeners.size).toBe(0);
    expect(await answersTotal()).toEqual({});
  });
});
