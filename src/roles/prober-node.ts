/**
 * `flotilla serve --role prober`: a readiness prober in its own process. Its targets are the
 * routes of the routing table the coordinator publishes in Redis (each entry carries its
 * replica's health check); several probers share them by rendezvous hashing (src/health).
 */
import { hostname } from 'node:os';
import type { Logger } from 'pino';
import type { RoutingTable } from '../domain/routing.ts';
import type { HealthStore } from '../health/health-store.ts';
import { createProber, type Prober, type ProbeTarget } from '../health/prober.ts';
import { createRedisHealthStore } from '../health/redis-health-store.ts';
import { createRedisTableSource, type RoutingTableSource } from '../proxy/routing-table-source.ts';

const PROBED = new Set(['PROVISIONING', 'HEALTHY', 'UNHEALTHY', 'DEGRADED']);

export function probeTargetsOf(table: RoutingTable): ProbeTarget[] {
  const out: ProbeTarget[] = [];
  for (const d of table.deployments) {
    for (const r of d.routes) {
      if (r.health && PROBED.has(r.state)) {
        out.push({ routeId: r.routeId, replicaId: r.replicaId, url: r.url, health: r.health });
      }
    }
  }
  return out;
}

export interface ProberNode {
  prober: Prober;
  store: HealthStore;
  source: RoutingTableSource;
  close(): Promise<void>;
}

export async function startProberNode(opts: {
  redisUrl: string;
  keyPrefix: string;
  ttlS?: number | undefined;
  logger: Logger;
}): Promise<ProberNode> {
  const source = await createRedisTableSource({
    url: opts.redisUrl,
    keyPrefix: opts.keyPrefix,
    logger: opts.logger,
  });
  const store = createRedisHealthStore({ url: opts.redisUrl, keyPrefix: opts.keyPrefix });
  let targets = probeTargetsOf(source.current());
  const unsub = source.subscribe((t) => {
    targets = probeTargetsOf(t);
  });
  const prober = createProber({
    store,
    proberId: `${hostname()}:${process.pid}:${Math.random().toString(36).slice(2, 8)}`,
    targets: () => targets,
    ttlS: opts.ttlS,
  });
  prober.start();
  return {
    prober,
    store,
    source,
    async close() {
      unsub();
      await prober.stop();
      await store.close();
      await source.close();
    },
  };
}
