import { Module, RequestMethod } from '@nestjs/common';
import { ConfigModule, type ConfigType } from '@nestjs/config';
import { APP_FILTER } from '@nestjs/core';
import { LoggerModule } from 'nestjs-pino';
import { loggingConfig } from '../config/logging.config.js';
import { AbortedRequestFilter } from './aborted-request.filter.js';
import { httpLoggerOptions, logDestination } from './http-logger.options.js';

/** pino for every log line: Nest's own, ours (`new Logger(Class.name)`) and one per HTTP request (499 for a client gone). */
@Module({
  imports: [
    LoggerModule.forRootAsync({
      imports: [ConfigModule.forFeature(loggingConfig)],
      inject: [loggingConfig.KEY],
      useFactory: (config: ConfigType<typeof loggingConfig>) => ({
        pinoHttp: [httpLoggerOptions(config), logDestination(config)],
        // Every path, 404s included: nestjs-pino's default route, `{/*splat}`, matches only `/` under @nestjs/platform-fastify 12.5.
        forRoutes: [{ path: '/{*splat}', method: RequestMethod.ALL }],
      }),
    }),
  ],
  providers: [{ provide: APP_FILTER, useClass: AbortedRequestFilter }],
})
export class LoggingModule {}
