/**
 * `flotilla serve --role proxy`: a stateless data-plane process. It follows the routing table
 * the coordinator publishes in Redis (loaded at start, re-read on every change notification)
 * and serves it; any number of them route consistently. Each writes one report to Redis
 * (src/proxy/proxy-report.ts): its in-flight requests per route, so the coordinator's route
 * drains wait for them, its last request per deployment (scale to zero's idle signal), and its
 * per-deployment load counters, which the coordinator's autoscaler sums. A
 * request for a deployment at zero is held and the coordinator asked, through Redis, to
 * activate it (src/proxy/activation.ts, src/runtime/activation-listener.ts). With
 * `--proxy-workers N` the proxy runs on N processes sharing the port (src/proxy/workers.ts):
 * this process follows the table for them and reports their sum as one proxy.
 */
import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import { Redis } from 'ioredis';
import type { Logger } from 'pino';
import { createDataPlane, type DataPlaneKind } from '../data-plane/create-data-plane.ts';
import { startProxyReportPublisher } from '../proxy/proxy-report.ts';
import type { FlotillaProxy as DataPlane } from '../proxy/proxy-server.ts';
import { createRedisTableSource, type RoutingTableSource } from '../proxy/routing-table-source.ts';
import { createProxyWorkers } from '../proxy/workers.ts';
import { publishActivation } from '../runtime/activation-listener.ts';
import { startLoadCounters } from '../scaling/load-counters.ts';

export interface ProxyNode {
  proxy: DataPlane;
  source: RoutingTableSource;
  /** This proxy's name in its reports: host, pid, port and a random tail. */
  proxyId: string;
  close(): Promise<void>;
}

export async function startProxyNode(opts: {
  redisUrl: string;
  keyPrefix: string;
  host: string;
  port: number;
  /** Default: the own proxy. */
  dataPlane?: DataPlaneKind | undefined;
  logger: Logger;
  /** How long a request for a deployment at zero waits for a replica (default 60 s). */
  activationTimeoutMs?: number;
  /**
   * Own proxy only: this many processes share the port (src/proxy/workers.ts); the node's
   * report and `/metrics` sum them. Default 1: the proxy runs in this process.
   */
  workers?: number | undefined;
  /** pino level of the workers' logs. */
  workerLogLevel?: string | undefined;
}): Promise<ProxyNode> {
  const source = await createRedisTableSource({
    url: opts.redisUrl,
    keyPrefix: opts.keyPrefix,
    logger: opts.logger,
  });
  const redis = new Redis(opts.redisUrl, {
    maxRetriesPerRequest: 2,
    connectionName: 'flotilla-proxy-report',
  });
  // Errors surface on the reports (logged there); the client reconnects by itself.
  redis.on('error', () => {});
  let proxy: DataPlane;
  const activation = {
    request: (deploymentId: string) => publishActivation(redis, opts.keyPrefix, deploymentId),
    ...(opts.activationTimeoutMs !== undefined ? { timeoutMs: opts.activationTimeoutMs } : {}),
  };
  try {
    proxy =
      (opts.workers ?? 1) > 1 && opts.dataPlane !== 'haproxy'
        ? await createProxyWorkers({
            source,
            count: opts.workers ?? 1,
            host: opts.host,
            port: opts.port,
            logger: opts.logger,
            logLevel: opts.workerLogLevel,
            activation,
          })
        : await createDataPlane({
            kind: opts.dataPlane,
            source,
            host: opts.host,
            port: opts.port,
            logger: opts.logger,
            activation,
          });
  } catch (err) {
    redis.disconnect();
    await source.close();
    throw err;
  }
  const proxyId = `${hostname()}:${process.pid}:${proxy.port}:${randomBytes(3).toString('hex')}`;
  const p = proxy;
  // In flight per route (drains), last requests (scale to zero) and the per-deployment load
  // counters (the coordinator's autoscaler, README "Autoscaling"), in one report.
  const publisher = startProxyReportPublisher({
    redis,
    keyPrefix: opts.keyPrefix,
    proxyId,
    source,
    inflight: (routeId) => p.inflight(routeId),
    lastRequests: () => p.lastRequests(),
    load: startLoadCounters({
      source: {
        deployments: () => source.current().deployments,
        status: (name) => p.status(name),
        metrics: p.metrics,
      },
      proxyId,
    }),
    logger: opts.logger,
  });
  return {
    proxy,
    source,
    proxyId,
    async close() {
      // Keep reporting while the proxy lets its requests finish, then withdraw the report.
      await proxy.close();
      await publisher.close();
      redis.disconnect();
      await source.close();
    },
  };
}
