import { registerAs } from '@nestjs/config';
import { environment } from './environment.js';

export const loggingConfig = registerAs('logging', () => {
  const env = environment();
  return {
    level: env.LOG_LEVEL,
    /** Colourised single lines for a developer's terminal; JSON lines everywhere else, for log collectors. */
    pretty: env.NODE_ENV === 'development',
  };
});
