/**
 * A proxy in its own process (`serve --role proxy`) tells the coordinator how many requests it
 * has in flight per route, so the coordinator's route drain can wait for every proxy, not just
 * an in-process one.
 *
 * Each proxy owns one Redis hash, `<prefix>inflight:<proxyId>`: field `_seq` (a counter raised
 * by every report) and one field per route with requests in flight (routeId -> count; a route
 * with none has no field), and for scale to zero one field per deployment this proxy has served,
 * `_last:<deploymentId>` -> epoch ms of its last request (now while requests are in flight,
 * queued or held). The whole hash is rewritten by each report, about once a second and
 * right after a routing table change, and expires after a few missed reports: a proxy whose key
 * is gone is not live and holds nothing (see src/runtime/cluster-inflight.ts, the reader).
 */
import type { Redis } from 'ioredis';
import type { Logger } from 'pino';
import type { RoutingTable } from '../domain/routing.ts';
import type { RoutingTableSource } from './routing-table-source.ts';

/** The hash of one proxy's in-flight counts. */
export function inflightKey(keyPrefix: string, proxyId: string): string {
  return `${keyPrefix}inflight:${proxyId}`;
}

/** The field holding the report counter (route ids never start with `_`). */
export const INFLIGHT_SEQ_FIELD = '_seq';
/** Prefix of the per-deployment last-request fields (`_last:<deploymentId>`). */
export const LAST_REQUEST_FIELD_PREFIX = '_last:';

export const DEFAULT_INFLIGHT_INTERVAL_MS = 1_000;
export const DEFAULT_INFLIGHT_TTL_MS = 3_000;

export interface InflightPublisher {
  /** Writes one report now (the next periodic one follows as usual). */
  publish(): Promise<void>;
  /** Stops reporting and deletes the key (the proxy is gone, so it holds nothing). */
  close(): Promise<void>;
}

export function startInflightPublisher(opts: {
  redis: Redis;
  keyPrefix: string;
  proxyId: string;
  source: RoutingTableSource;
  /** Requests in flight to a route at this proxy, also after the route left the table. */
  inflight: (routeId: string) => number;
  /** Last request per deployment id, epoch ms (the proxy's `lastRequests`). */
  lastRequests?: () => ReadonlyMap<string, number>;
  logger: Logger;
  intervalMs?: number;
  ttlMs?: number;
}): InflightPublisher {
  const key = inflightKey(opts.keyPrefix, opts.proxyId);
  const intervalMs = opts.intervalMs ?? DEFAULT_INFLIGHT_INTERVAL_MS;
  const ttlMs = opts.ttlMs ?? DEFAULT_INFLIGHT_TTL_MS;
  // Routes to count: every route of every table seen since the last report, plus those still
  // holding requests (a route that left the table keeps its requests until they end).
  const watched = new Set<string>();
  const watch = (t: RoutingTable) => {
    for (const d of t.deployments) for (const r of d.routes) watched.add(r.routeId);
  };
  watch(opts.source.current());
  let seq = 0;
  let closed = false;
  let chain: Promise<void> = Promise.resolve();

  const report = async () => {
    if (closed) return;
    const counts: string[] = [];
    const inTable = new Set<string>();
    for (const d of opts.source.current().deployments) {
      for (const r of d.routes) inTable.add(r.routeId);
    }
    for (const routeId of [...watched]) {
      const n = opts.inflight(routeId);
      if (n > 0) counts.push(routeId, String(n));
      else if (!inTable.has(routeId)) watched.delete(routeId);
    }
    if (opts.lastRequests) {
      for (const [id, at] of opts.lastRequests()) {
        counts.push(`${LAST_REQUEST_FIELD_PREFIX}${id}`, String(Math.round(at)));
      }
    }
    seq++;
    await opts.redis
      .multi()
      .del(key)
      .hset(key, INFLIGHT_SEQ_FIELD, String(seq), ...counts)
      .pexpire(key, ttlMs)
      .exec();
  };
  // Reports one at a time, in order; a failed one is logged and the next one retries.
  const publish = () => {
    chain = chain
      .then(report)
      .catch((err: unknown) => opts.logger.warn({ err }, 'publishing in-flight counts failed'));
    return chain;
  };

  const unsubscribe = opts.source.subscribe((t) => {
    watch(t);
    void publish();
  });
  const timer = setInterval(() => void publish(), intervalMs);
  timer.unref();
  void publish();

  return {
    publish,
    async close() {
      if (closed) return;
      clearInterval(timer);
      unsubscribe();
      await chain;
      closed = true;
      await opts.redis
        .del(key)
        .catch((err: unknown) => opts.logger.warn({ err }, 'deleting in-flight counts failed'));
    },
  };
}
