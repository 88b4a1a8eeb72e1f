import { InferenceClient } from '@huggingface/inference';
import { Logger } from '@nestjs/common';
import { UseCircuitBreaker } from '../circuit-breaker/circuit-breaker.decorator.js';
import { ModelCallFailedError, ModelUnconfiguredError, modelFailureVerdict } from './hf-textgen.errors.js';
import { classifyUpstreamError } from './upstream-error.classifier.js';

export interface ChatPrompt {
  system: string;
  user: string;
}

export interface Generation {
  text: string;
  model: string;
}

/** One model target's settings: which model, through which endpoint, with which generation parameters. */
export interface HfTextGenClientConfig {
  token: string | undefined;
  model: string;
  /** undefined = the HF Inference Providers router. */
  endpointUrl: string | undefined;
  maxNewTokens: number;
  temperature: number;
}

/**
 * Asks one model target for a chat completion. Each target is its own instance, put behind its own breaker by
 * ModelTargets (`CircuitBreakerRegistry.guard`): the decorators say how, the instance's breaker says which.
 */
export class HfTextGenClient {
  private readonly logger = new Logger(HfTextGenClient.name);
  private readonly client: InferenceClient;

  constructor(private readonly config: HfTextGenClientConfig) {
    this.client = new InferenceClient(config.token, config.endpointUrl ? { endpointUrl: config.endpointUrl } : {});
  }

  /** With neither a token nor an endpoint there is nothing to call. */
  get configured(): boolean {
    return Boolean(this.config.token || this.config.endpointUrl);
  }

  get model(): string {
    return this.config.model;
  }

  /** Says at start-up where this target's calls go, and warns when that cannot work or is unsafe. */
  announce(): void {
    if (!this.configured) {
      this.logger.warn(`Neither HF_TOKEN nor an endpoint is set for ${this.config.model}: it will not be called`);
      return;
    }
    const endpoint = this.config.endpointUrl ? new URL(this.config.endpointUrl) : undefined;
    const target = endpoint ? `endpoint ${endpoint.origin}` : 'the HF Inference Providers router';
    this.logger.log(`Generating with ${this.config.model} through ${target}`);
    if (endpoint && this.config.token && endpoint.protocol === 'http:' && !isLoopback(endpoint.hostname)) {
      this.logger.warn(`HF_TOKEN is sent to ${endpoint.origin} over plain http: anyone on the path can read it; use https`);
    }
  }

  @UseCircuitBreaker({ classify: modelFailureVerdict })
  async generate(prompt: ChatPrompt, signal?: AbortSignal): Promise<Generation> {
    if (!this.configured) throw new ModelUnconfiguredError();
    const upstream = new UpstreamResponse();
    try {
      const completion = await this.client.chatCompletion(this.chatRequest(prompt), upstream.options(signal));
      const text = completion?.choices?.[0]?.message?.content;
      if (typeof text !== 'string' || text.trim() === '') {
        throw new ModelCallFailedError('protocol', 'The model answered without any message content');
      }
      return { text: text.trim(), model: typeof completion.model === 'string' ? completion.model : this.config.model };
    } catch (error) {
      throw classifyUpstreamError(error, { headers: upstream.headers, signal });
    }
  }

  /**
   * The model's answer as it is generated: its text pieces, in order. Nothing is requested until the first piece is
   * read; behind the breaker (stream mode) that read is bounded by the time-out and each later one by the idle time-out.
   * Errors, also those that arrive inside an HTTP 200 stream, are classified like generate()'s.
   */
  @UseCircuitBreaker({ classify: modelFailureVerdict, stream: true })
  generateStream(prompt: ChatPrompt, signal?: AbortSignal): Promise<AsyncIterableIterator<string>> {
    if (!this.configured) return Promise.reject(new ModelUnconfiguredError());
    const upstream = new UpstreamResponse();
    const chunks = this.client.chatCompletionStream(this.chatRequest(prompt), upstream.options(signal));
    return Promise.resolve(textPieces(chunks, upstream, signal));
  }

  private chatRequest(prompt: ChatPrompt) {
    return {
      model: this.config.model,
      messages: [
        { role: 'system', content: prompt.system },
        { role: 'user', content: prompt.user },
      ],
      max_tokens: this.config.maxNewTokens,
      temperature: this.config.temperature,
    };
  }
}

/** The upstream response's headers, kept for Retry-After: the client's errors keep the status but drop the headers. */
class UpstreamResponse {
  headers?: Headers;

  options(signal: AbortSignal | undefined) {
    const fetchKeepingHeaders: typeof fetch = async (input, init) => {
      const response = await fetch(input, init);
      this.headers = response.headers;
      return response;
    };
    // retry_on_error would re-call on every 503 at once, without limit, behind the breaker's back.
    return { retry_on_error: false, fetch: fetchKeepingHeaders, signal };
  }
}

/**
 * The text of each chunk. A stream must end with a finish_reason: one that just stops (a connection closed cleanly
 * by a proxy mid-answer) is a failure, not a short answer.
 */
async function* textPieces(
  chunks: AsyncIterable<{ choices?: Array<{ delta?: { content?: unknown }; finish_reason?: unknown }> }>,
  upstream: UpstreamResponse,
  signal: AbortSignal | undefined,
): AsyncGenerator<string, void, undefined> {
  let streamed = false;
  let finished = false;
  try {
    for await (const chunk of chunks) {
      const choice = chunk?.choices?.[0];
      if (typeof choice?.finish_reason === 'string' && choice.finish_reason !== '') finished = true;
      const text = choice?.delta?.content;
      if (typeof text !== 'string' || text === '') continue;
      streamed = true;
      yield text;
    }
  } catch (error) {
    throw classifyUpstreamError(error, { headers: upstream.headers, signal });
  }
  if (!streamed) throw new ModelCallFailedError('protocol', 'The model streamed no message content');
  if (!finished) throw new ModelCallFailedError('protocol', 'The model stream ended without a finish reason');
}

/** Plain http to this machine itself never crosses a network. */
function isLoopback(hostname: string): boolean {
  return hostname === 'localhost' || hostname === '[::1]' || /^127(\.\d{1,3}){3}$/.test(hostname);
}
