import { registerAs } from '@nestjs/config';
import { environment, targetsOf } from './environment.js';

export const hfTextGenConfig = registerAs('hfTextGen', () => {
  const env = environment();
  return {
    token: env.HF_TOKEN,
    /** The targets a request tries in order: HF_MODEL, then HF_FALLBACK_MODELS, each with its own breaker. */
    targets: targetsOf(env),
    maxNewTokens: env.HF_MAX_NEW_TOKENS,
    temperature: env.HF_TEMPERATURE,
  };
});
