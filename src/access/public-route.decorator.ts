import { SetMetadata } from '@nestjs/common';

export const PUBLIC_ROUTE_METADATA = 'ACCESS:PUBLIC_ROUTE';

/** A controller or route that never needs an API key (probes, metrics). Everything else does, when keys are set. */
export const PublicRoute = (): ClassDecorator & MethodDecorator => SetMetadata(PUBLIC_ROUTE_METADATA, true);
