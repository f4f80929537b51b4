/**
 * The data plane `serve --data-plane` chooses: Flotilla's own proxy (default) or a managed
 * HAProxy (README "HAProxy data plane"). Both follow a routing table source and offer the
 * same FlotillaProxy interface to the coordinator and /health.
 */
import type { Logger } from 'pino';
import type { ConnectionTimeouts } from '../domain/connection-timeouts.ts';
import { createProxy, type FlotillaProxy, type ProxyOptions } from '../proxy/proxy-server.ts';
import type { RoutingTableSource } from '../proxy/routing-table-source.ts';
import { createHaproxyDataPlane } from './haproxy/haproxy-data-plane.ts';

export const DataPlaneKinds = ['own', 'haproxy'] as const;
export type DataPlaneKind = (typeof DataPlaneKinds)[number];

export interface DataPlaneOptions {
  kind?: DataPlaneKind | undefined;
  source: RoutingTableSource;
  host?: string | undefined;
  port?: number | undefined;
  logger?: Logger | undefined;
  /** Own proxy only. */
  timeouts?: Partial<ConnectionTimeouts> | undefined;
  /** Own proxy only: scale to zero's activation (HAProxy answers 503 at zero). */
  activation?: ProxyOptions['activation'];
}

export function createDataPlane(opts: DataPlaneOptions): Promise<FlotillaProxy> {
  const common = {
    source: opts.source,
    ...(opts.host !== undefined ? { host: opts.host } : {}),
    ...(opts.port !== undefined ? { port: opts.port } : {}),
    ...(opts.logger ? { logger: opts.logger } : {}),
  };
  if (opts.kind === 'haproxy') return createHaproxyDataPlane(common);
  return createProxy({
    ...common,
    ...(opts.timeouts ? { timeouts: opts.timeouts } : {}),
    ...(opts.activation ? { activation: opts.activation } : {}),
  });
}
