import 'reflect-metadata';
import { Logger } from '@nestjs/common';
import type { ConfigType } from '@nestjs/config';
import { NestFactory } from '@nestjs/core';
import type { NestFastifyApplication } from '@nestjs/platform-fastify';
import { AppModule } from './app.module.js';
import { APP_OPTIONS, configureApp, createHttpAdapter } from './app.setup.js';
import { appConfig } from './config/app.config.js';
import { InvalidEnvironmentError, loadEnvironment } from './config/environment.js';
import { ApplicationReadiness } from './health/application-readiness.js';
import { errorMessage } from './logging/error-message.js';

const logger = new Logger('Bootstrap');

async function bootstrap(): Promise<void> {
  loadEnvironment();
  const app = configureApp(await NestFactory.create<NestFastifyApplication>(AppModule, createHttpAdapter(), APP_OPTIONS));
  const { port, host, shutdownDrainMs } = app.get<ConfigType<typeof appConfig>>(appConfig.KEY);
  stopGracefullyOnSignals(app, shutdownDrainMs);
  await app.listen(port, host);
  logger.log(`Listening on http://${host}:${port}`);
}

/**
 * SIGTERM: readiness turns 503 at once, the app keeps serving for the drain delay so load balancers stop
 * sending, then closes (in-flight requests finish, Redis closes) and exits 0. SIGINT skips the delay.
 */
function stopGracefullyOnSignals(app: NestFastifyApplication, drainMs: number): void {
  let stopping = false;
  const stop = async (signal: NodeJS.Signals): Promise<void> => {
    if (stopping) return;
    stopping = true;
    app.get(ApplicationReadiness).beginDraining();
    const delayMs = signal === 'SIGTERM' ? drainMs : 0;
    logger.log(`${signal} received: not ready; draining in ${delayMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, delayMs));
    await app.close();
    logger.log('Stopped');
    process.exit(0);
  };
  for (const signal of ['SIGTERM', 'SIGINT'] as const) {
    process.once(signal, (received) => {
      stop(received).catch((error: unknown) => {
        logger.error(`Shutdown failed: ${errorMessage(error)}`);
        process.exit(1);
      });
    });
  }
}

bootstrap().catch((error: unknown) => {
  // A bad variable is the operator's to fix: one line naming it, no stack.
  logger.error(
    error instanceof InvalidEnvironmentError ? error.message : error instanceof Error ? (error.stack ?? error.message) : String(error),
  );
  process.exit(1);
});
