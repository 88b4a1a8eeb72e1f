import { Module, RequestMethod } from '@nestjs/common';
import { ConfigModule, type ConfigType } from '@nestjs/config';
import { LoggerModule } from 'nestjs-pino';
import { loggingConfig } from '../config/logging.config.js';
import { httpLoggerOptions, logDestination } from './http-logger.options.js';

/** pino for every log line: Nest's own, ours (`new Logger(Class.name)`) and one per HTTP request. */
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
})
export class LoggingModule {}
