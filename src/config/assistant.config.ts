import { registerAs } from '@nestjs/config';
import { environment } from './environment.js';

export const assistantConfig = registerAs('assistant', () => {
  const env = environment();
  return {
    maxQueryLength: env.ASSISTANT_MAX_QUERY_LENGTH,
    /** The longest one request spends on model calls, every target and hedge together (ASSISTANT_DEADLINE_SECONDS). */
    deadlineMs: Math.round(env.ASSISTANT_DEADLINE_SECONDS * 1000),
    /** A target without a first token this long gets a hedge; 0 = off (HF_HEDGE_AFTER_SECONDS). */
    hedgeAfterMs: Math.round(env.HF_HEDGE_AFTER_SECONDS * 1000),
    /** Identical questions in flight share one model call (ASSISTANT_COALESCE). */
    coalesce: env.ASSISTANT_COALESCE,
  };
});
