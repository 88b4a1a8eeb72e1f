import { registerAs } from '@nestjs/config';
import { environment } from './environment.js';

export const assistantConfig = registerAs('assistant', () => ({ maxQueryLength: environment().ASSISTANT_MAX_QUERY_LENGTH }));
