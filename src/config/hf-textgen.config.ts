import { registerAs } from '@nestjs/config';
import { environment } from './environment.js';

export const hfTextGenConfig = registerAs('hfTextGen', () => {
  const env = environment();
  return {
    token: env.HF_TOKEN,
    model: env.HF_MODEL,
    endpointUrl: env.HF_ENDPOINT_URL,
    maxNewTokens: env.HF_MAX_NEW_TOKENS,
    temperature: env.HF_TEMPERATURE,
  };
});
