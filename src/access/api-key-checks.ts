import { Inject, Injectable } from '@nestjs/common';
import type { ConfigType } from '@nestjs/config';
import { accessConfig } from '../config/access.config.js';
import { ApiKeyRefusedError, KeyChecksExhaustedError } from './access.errors.js';
import { ApiKeys } from './api-keys.js';
import { FAILED_KEY_CHECKS_PER_MINUTE, KeyCheckBudget } from './key-check-budget.js';

/** Why a key check refused a request: no key, a wrong one, or the address past its budget of failed checks. */
export type KeyRejection = 'missing' | 'invalid' | 'over_budget';

/** What the key checks tell their observers (the metrics); a listener must not throw. */
export interface KeyCheckListener {
  rejected(reason: KeyRejection): void;
}

/** The API key check of a request: the address's budget first, then the key; every refusal is told to the observers. */
@Injectable()
export class ApiKeyChecks {
  private readonly keys: ApiKeys;
  private readonly listeners = new Set<KeyCheckListener>();

  constructor(
    @Inject(accessConfig.KEY) config: ConfigType<typeof accessConfig>,
    private readonly budget: KeyCheckBudget,
  ) {
    this.keys = new ApiKeys(config.apiKeys);
  }

  /** ASSISTANT_API_KEYS is set: the answer routes need a key. */
  get required(): boolean {
    return this.keys.required;
  }

  /**
   * The id of the configured key a caller at `address` presented. Throws KeyChecksExhaustedError while the address is
   * past its budget (before the key is looked at), ApiKeyRefusedError for no key or a wrong one.
   */
  async identify(address: string, presented: string | undefined): Promise<string> {
    const waitSeconds = this.budget.secondsRefused(address);
    if (waitSeconds !== undefined) throw this.rejected(new KeyChecksExhaustedError(FAILED_KEY_CHECKS_PER_MINUTE, waitSeconds));
    const id = presented === undefined ? undefined : this.keys.identify(presented);
    if (id !== undefined) return id;
    const spentElsewhere = await this.budget.failed(address);
    if (spentElsewhere !== undefined) throw this.rejected(new KeyChecksExhaustedError(FAILED_KEY_CHECKS_PER_MINUTE, spentElsewhere));
    throw this.rejected(new ApiKeyRefusedError(presented === undefined ? 'missing' : 'invalid'));
  }

  /** Calls `listener` on every refusal from now on; returns what stops it. */
  observe(listener: KeyCheckListener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  private rejected<E extends ApiKeyRefusedError | KeyChecksExhaustedError>(error: E): E {
    const reason: KeyRejection = error instanceof ApiKeyRefusedError ? error.reason : 'over_budget';
    for (const listener of this.listeners) listener.rejected(reason);
    return error;
  }
}
