import { registerAs } from '@nestjs/config';
import { environment } from './environment.js';

export const knowledgeConfig = registerAs('knowledge', () => ({ dir: environment().KNOWLEDGE_DIR }));
