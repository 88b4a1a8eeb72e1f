import { registerAs } from '@nestjs/config';
import { environment } from './environment.js';

export const accessConfig = registerAs('access', () => ({
  /** Each entry plain or `sha256:<hex>`; none = no key needed. */
  apiKeys: (environment().ASSISTANT_API_KEYS ?? '')
    .split(',')
    .map((key) => key.trim())
    .filter((key) => key !== ''),
}));
