export { accessConfig } from './access.config.js';
export { appConfig } from './app.config.js';
export { assistantConfig } from './assistant.config.js';
export { cacheConfig } from './cache.config.js';
export { circuitBreakerConfig } from './circuit-breaker.config.js';
export {
  envFilePath,
  environment,
  InvalidEnvironmentError,
  LOG_LEVELS,
  type LogLevel,
  parseTrustProxy,
  targetsOf,
  type TrustProxy,
  validateEnvironment,
} from './environment.js';
export { hfTextGenConfig } from './hf-textgen.config.js';
export { knowledgeConfig } from './knowledge.config.js';
export { loggingConfig } from './logging.config.js';
export { rateLimitConfig, trustProxySetting } from './rate-limit.config.js';
export { type ModelTargetConfig } from './model-targets.js';
