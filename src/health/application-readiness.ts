import { Injectable, OnApplicationBootstrap } from '@nestjs/common';
import { HealthIndicatorService, type HealthIndicatorResult } from '@nestjs/terminus';

type Phase = 'starting' | 'ready' | 'draining';

/** Ready once bootstrapped; not ready again from the moment a shutdown signal arrives. */
@Injectable()
export class ApplicationReadiness implements OnApplicationBootstrap {
  private phase: Phase = 'starting';

  constructor(private readonly health: HealthIndicatorService) {}

  onApplicationBootstrap(): void {
    if (this.phase === 'starting') this.phase = 'ready';
  }

  beginDraining(): void {
    this.phase = 'draining';
  }

  get draining(): boolean {
    return this.phase === 'draining';
  }

  isHealthy(key = 'readiness'): HealthIndicatorResult {
    const indicator = this.health.check(key);
    return this.phase === 'ready' ? indicator.up({ phase: this.phase }) : indicator.down({ phase: this.phase });
  }
}
