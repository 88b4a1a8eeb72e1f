import { InferenceClient } from '@huggingface/inference';
import { Inject, Injectable, Logger, OnModuleInit } from '@nestjs/common';
import type { ConfigType } from '@nestjs/config';
import { UseCircuitBreaker } from '../circuit-breaker/circuit-breaker.decorator.js';
import { hfTextGenConfig } from '../config/hf-textgen.config.js';
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

/** Asks the configured model for a chat completion; behind the generation circuit breaker. */
@Injectable()
export class HfTextGenService implements OnModuleInit {
  private readonly logger = new Logger(HfTextGenService.name);
  private readonly client: InferenceClient;

  constructor(@Inject(hfTextGenConfig.KEY) private readonly config: ConfigType<typeof hfTextGenConfig>) {
    this.client = new InferenceClient(config.token, config.endpointUrl ? { endpointUrl: config.endpointUrl } : {});
  }

  /** With neither a token nor an endpoint there is nothing to call. */
  get configured(): boolean {
    return Boolean(this.config.token || this.config.endpointUrl);
  }

  /** What changes an answer besides the prompt; part of every cache key. */
  get generationParameters(): { model: string; maxNewTokens: number; temperature: number } {
    return { model: this.config.model, maxNewTokens: this.config.maxNewTokens, temperature: this.config.temperature };
  }

  onModuleInit(): void {
    if (!this.configured) {
      this.logger.warn('Neither HF_TOKEN nor HF_ENDPOINT_URL is set: no model will be called, every answer is degraded');
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
    let responseHeaders: Headers | undefined;
    // The client's errors keep the status but drop the headers; keep them for Retry-After.
    const fetchKeepingHeaders: typeof fetch = async (input, init) => {
      const response = await fetch(input, init);
      responseHeaders = response.headers;
      return response;
    };
    try {
      const completion = await this.client.chatCompletion(
        {
          model: this.config.model,
          messages: [
            { role: 'system', content: prompt.system },
            { role: 'user', content: prompt.user },
          ],
          max_tokens: this.config.maxNewTokens,
          temperature: this.config.temperature,
        },
        // retry_on_error would re-call on every 503 at once, without limit, behind the breaker's back.
        { retry_on_error: false, fetch: fetchKeepingHeaders, signal },
      );
      const text = completion?.choices?.[0]?.message?.content;
      if (typeof text !== 'string' || text.trim() === '') {
        throw new ModelCallFailedError('protocol', 'The model answered without any message content');
      }
      return { text: text.trim(), model: typeof completion.model === 'string' ? completion.model : this.config.model };
    } catch (error) {
      throw classifyUpstreamError(error, { headers: responseHeaders, signal });
    }
  }
}

/** Plain http to this machine itself never crosses a network. */
function isLoopback(hostname: string): boolean {
  return hostname === 'localhost' || hostname === '[::1]' || /^127(\.\d{1,3}){3}$/.test(hostname);
}
