import { Inject, Injectable, Logger, type OnModuleInit } from '@nestjs/common';
import type { ConfigType } from '@nestjs/config';
import type { CircuitBreaker, CircuitState } from '../circuit-breaker/circuit-breaker.js';
import { BulkheadFullError, CircuitOpenError } from '../circuit-breaker/circuit-breaker.errors.js';
import { CircuitBreakerRegistry } from '../circuit-breaker/circuit-breaker.registry.js';
import { circuitBreakerConfig } from '../config/circuit-breaker.config.js';
import { hfTextGenConfig } from '../config/hf-textgen.config.js';
import { type ChatPrompt, type Generation, HfTextGenClient } from './hf-textgen.client.js';
import { ModelCallFailedError, type PassReason, passReasonOf } from './hf-textgen.errors.js';

export interface CircuitStatus {
  name: string;
  state: CircuitState;
}

/**
 * A target gave no answer: which one, why, its breaker as the call left it, and when it may be tried again. The
 * caller needs nothing else to pass it over, report it, or say when to retry.
 */
export class TargetPassedError extends Error {
  constructor(
    readonly model: string,
    readonly reason: PassReason,
    readonly retryAfterSeconds: number,
    readonly circuit: CircuitStatus,
    cause?: unknown,
  ) {
    super(`Model target ${model} gave no answer (${reason})`, { cause });
    this.name = 'TargetPassedError';
  }
}

/**
 * One model target: its client, behind its own breaker. Every way it can fail to answer comes out as one
 * TargetPassedError; a call whose caller aborted it (the client left, the request's deadline, a hedge that lost)
 * rejects with the abort's own error, for the caller knows why it aborted.
 */
export class ModelTarget {
  constructor(
    readonly model: string,
    readonly breaker: CircuitBreaker,
    private readonly client: HfTextGenClient,
    private readonly resetTimeoutSeconds: number,
    /** Its breaker's per-call time-out: a call with less than this left of the request's deadline may be cut there. */
    readonly timeoutMs: number,
  ) {}

  get circuit(): CircuitStatus {
    return { name: this.breaker.name, state: this.breaker.state };
  }

  get configured(): boolean {
    return this.client.configured;
  }

  async generate(prompt: ChatPrompt, signal?: AbortSignal): Promise<Generation> {
    try {
      return await this.client.generate(prompt, signal);
    } catch (error) {
      throw this.passed(error, signal);
    }
  }

  /** Resolves once the first piece has arrived; a failure after it rejects a read with TargetPassedError. */
  async stream(prompt: ChatPrompt, signal?: AbortSignal): Promise<AsyncIterableIterator<string>> {
    let pieces: AsyncIterableIterator<string>;
    try {
      pieces = await this.client.generateStream(prompt, signal);
    } catch (error) {
      throw this.passed(error, signal);
    }
    return new PassingStream(pieces, (error) => this.passed(error, signal));
  }

  /** Passed over without a call (no time was left for it). */
  skipped(reason: PassReason): TargetPassedError {
    return new TargetPassedError(this.model, reason, this.breaker.retryAfterSeconds(), this.circuit);
  }

  private passed(error: unknown, signal: AbortSignal | undefined): unknown {
    if (signal?.aborted) return error;
    const reason = passReasonOf(error);
    let retryAfterSeconds: number;
    if (error instanceof CircuitOpenError || error instanceof BulkheadFullError) retryAfterSeconds = error.retryAfterSeconds;
    // Nothing changes until someone configures the target: suggest the breaker's own retry cadence.
    else if (reason === 'upstream_unconfigured') retryAfterSeconds = this.breaker.retryAfterSeconds(this.resetTimeoutSeconds);
    // This failure may just have opened the circuit: then the trial time is the honest answer.
    else retryAfterSeconds = this.breaker.retryAfterSeconds(error instanceof ModelCallFailedError ? error.retryAfterSeconds : undefined);
    return new TargetPassedError(this.model, reason, retryAfterSeconds, this.circuit, error);
  }
}

/** A target's pieces, its failures told as TargetPassedError; return() ends the guarded stream beneath at once. */
class PassingStream implements AsyncIterableIterator<string> {
  constructor(
    private readonly pieces: AsyncIterableIterator<string>,
    private readonly toPassed: (error: unknown) => unknown,
  ) {}

  async next(): Promise<IteratorResult<string>> {
    try {
      return await this.pieces.next();
    } catch (error) {
      throw this.toPassed(error);
    }
  }

  async return(): Promise<IteratorResult<string>> {
    await this.pieces.return?.();
    return { value: undefined, done: true };
  }

  [Symbol.asyncIterator](): this {
    return this;
  }
}

/**
 * The model targets in the order a request tries them (HF_MODEL, then HF_FALLBACK_MODELS), each a client instance
 * behind a breaker of its own, named as the contract says and shared by the fleet like any other.
 */
@Injectable()
export class ModelTargets implements OnModuleInit {
  private readonly logger = new Logger(ModelTargets.name);
  readonly list: readonly ModelTarget[];
  private readonly clients: HfTextGenClient[] = [];

  constructor(
    @Inject(hfTextGenConfig.KEY) private readonly config: ConfigType<typeof hfTextGenConfig>,
    @Inject(circuitBreakerConfig.KEY) breakerConfig: ConfigType<typeof circuitBreakerConfig>,
    registry: CircuitBreakerRegistry,
  ) {
    this.list = config.targets.map(({ model, endpointUrl, breakerName }) => {
      const client = new HfTextGenClient({
        token: config.token,
        model,
        endpointUrl,
        maxNewTokens: config.maxNewTokens,
        temperature: config.temperature,
      });
      this.clients.push(registry.guard(client, breakerName));
      return new ModelTarget(model, registry.get(breakerName), client, breakerConfig.resetTimeoutMs / 1000, breakerConfig.timeoutMs);
    });
  }

  /** The first target: its breaker is the one answers report (`circuit`). */
  get first(): ModelTarget {
    return this.list[0];
  }

  /**
   * What changes an answer besides the prompt; part of every cache key. The configured list, not whichever target
   * answered: a question is one entry whoever wrote it. With one target the key is what it was before targets.
   */
  get generationParameters(): { model: string; maxNewTokens: number; temperature: number } {
    return {
      model: this.list.map((target) => target.model).join(','),
      maxNewTokens: this.config.maxNewTokens,
      temperature: this.config.temperature,
    };
  }

  onModuleInit(): void {
    if (this.clients.some((client) => client.configured)) for (const client of this.clients) client.announce();
    else this.logger.warn('Neither HF_TOKEN nor HF_ENDPOINT_URL is set: no model will be called, every answer is degraded');
  }
}
