/**
 * `flotilla serve --role proxy`: a stateless data-plane process. It follows the routing table
 * the coordinator publishes in Redis (loaded at start, re-read on every change notification)
 * and serves it; any number of them route consistently.
 */
import type { Logger } from 'pino';
import { createProxy, type Proxy as DataPlane } from '../proxy/proxy-server.ts';
import { createRedisTableSource, type RoutingTableSource } from '../proxy/routing-table-source.ts';

export interface ProxyNode {
  proxy: DataPlane;
  source: RoutingTableSource;
  close(): Promise<void>;
}

export async function startProxyNode(opts: {
  redisUrl: string;
  keyPrefix: string;
  host: string;
  port: number;
  logger: Logger;
}): Promise<ProxyNode> {
  const source = await createRedisTableSource({
    url: opts.redisUrl,
    keyPrefix: opts.keyPrefix,
    logger: opts.logger,
  });
  const proxy = await createProxy({
    source,
    host: opts.host,
    port: opts.port,
    logger: opts.logger,
  });
  return {
    proxy,
    source,
    async close() {
      await proxy.close();
      await source.close();
    },
  };
}
