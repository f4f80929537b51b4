/**
 * A proxy in its own process (`serve --role proxy`) reports to the coordinator, through Redis,
 * what the coordinator cannot see from its own process: its requests in flight per route (route
 * drains wait for every proxy), its last request per deployment (scale to zero's idle signal)
 * and its per-deployment load counters (the autoscaler sums them, src/scaling/load-report.ts).
 *
 * Each proxy owns one Redis hash, `<prefix>proxy:<proxyId>`:
 * - `_seq`: a counter raised by every report;
 * - `_load`: the JSON of its latest LoadReport (when the proxy keeps load counters);
 * - `_last:<deploymentId>`: epoch ms of its last request to the deployment (now while requests
 *   are in flight, queued or held), one field per deployment this proxy has served;
 * - `<routeId>`: requests in flight to the route (a route with none has no field; route ids
 *   never start with `_`).
 * The whole hash is rewritten by each report, about once a second and right after a routing
 * table change, and expires after a few missed reports: a proxy whose key is gone is not live
 * and holds nothing. src/runtime/cluster-proxies.ts is the reader; {@link parseProxyReport}
 * is the one decoder of the hash.
 */
import type { Redis } from 'ioredis';
import type { Logger } from 'pino';
import type { RoutingTable } from '../domain/routing.ts';
import type { LoadCounters } from '../scaling/load-counters.ts';
import { type LoadReport, parseLoadReport } from '../scaling/load-report.ts';
import type { RoutingTableSource } from './routing-table-source.ts';

/** The hash of one proxy's report. */
export function proxyReportKey(keyPrefix: string, proxyId: string): string {
  return `${keyPrefix}proxy:${proxyId}`;
}

/** The field holding the report counter. */
export const SEQ_FIELD = '_seq';
/** The field holding the JSON LoadReport. */
export const LOAD_FIELD = '_load';
/** Prefix of the per-deployment last-request fields (`_last:<deploymentId>`). */
export const LAST_REQUEST_FIELD_PREFIX = '_last:';

export const DEFAULT_REPORT_INTERVAL_MS = 1_000;
export const DEFAULT_REPORT_TTL_MS = 3_000;

/** One proxy's latest report, as the coordinator reads it. */
export interface ProxyReport {
  seq: number;
  /** routeId -> requests in flight (routes without requests are absent). */
  counts: Map<string, number>;
  /** deploymentId -> epoch ms of its last request at this proxy (scale to zero's idle signal). */
  lastRequests: Map<string, number>;
  /** Its load counters; null when it keeps none or the field is not one (another version). */
  load: LoadReport | null;
}

/** Decodes a report hash (HGETALL); null when it is not one (expired between reads, empty). */
export function parseProxyReport(fields: Record<string, string> | null): ProxyReport | null {
  if (!fields || fields[SEQ_FIELD] === undefined) return null;
  const counts = new Map<string, number>();
  const lastRequests = new Map<string, number>();
  for (const [f, v] of Object.entries(fields)) {
    if (f.startsWith(LAST_REQUEST_FIELD_PREFIX)) {
      lastRequests.set(f.slice(LAST_REQUEST_FIELD_PREFIX.length), Number(v));
    } else if (!f.startsWith('_')) counts.set(f, Number(v));
  }
  const loadText = fields[LOAD_FIELD];
  return {
    seq: Number(fields[SEQ_FIELD]),
    counts,
    lastRequests,
    load: loadText === undefined ? null : parseLoadReport(loadText),
  };
}

export interface ProxyReportPublisher {
  /** Writes one report now (the next periodic one follows as usual). */
  publish(): Promise<void>;
  /** Stops reporting (and the load counters) and deletes the key: the proxy is gone. */
  close(): Promise<void>;
}

export function startProxyReportPublisher(opts: {
  redis: Redis;
  keyPrefix: string;
  proxyId: string;
  source: RoutingTableSource;
  /** Requests in flight to a route at this proxy, also after the route left the table. */
  inflight: (routeId: string) => number;
  /** Last request per deployment id, epoch ms (the proxy's `lastRequests`). */
  lastRequests?: () => ReadonlyMap<string, number>;
  /** Its per-deployment load counters, for the coordinator's autoscaler. */
  load?: LoadCounters;
  logger: Logger;
  intervalMs?: number;
  ttlMs?: number;
}): ProxyReportPublisher {
  const key = proxyReportKey(opts.keyPrefix, opts.proxyId);
  const intervalMs = opts.intervalMs ?? DEFAULT_REPORT_INTERVAL_MS;
  const ttlMs = opts.ttlMs ?? DEFAULT_REPORT_TTL_MS;
  // Routes to count: every route of every table seen since the last report, plus those still
  // holding requests (a route that left the table keeps its requests until they end).
  const watched = new Set<string>();
  const watch = (t: RoutingTable) => {
    for (const d of t.deployments) for (const r of d.routes) watched.add(r.routeId);
  };
  watch(opts.source.current());
  let seq = 0;
  let closed = false;
  let warned = false;
  let chain: Promise<void> = Promise.resolve();

  const report = async () => {
    if (closed) return;
    const fields: string[] = [];
    const inTable = new Set<string>();
    for (const d of opts.source.current().deployments) {
      for (const r of d.routes) inTable.add(r.routeId);
    }
    for (const routeId of [...watched]) {
      const n = opts.inflight(routeId);
      if (n > 0) fields.push(routeId, String(n));
      else if (!inTable.has(routeId)) watched.delete(routeId);
    }
    if (opts.lastRequests) {
      for (const [id, at] of opts.lastRequests()) {
        fields.push(`${LAST_REQUEST_FIELD_PREFIX}${id}`, String(Math.round(at)));
      }
    }
    if (opts.load) fields.push(LOAD_FIELD, JSON.stringify(await opts.load.report()));
    seq++;
    await opts.redis
      .multi()
      .del(key)
      .hset(key, SEQ_FIELD, String(seq), ...fields)
      .pexpire(key, ttlMs)
      .exec();
    if (warned) opts.logger.info({}, 'publishing the proxy report works again');
    warned = false;
  };
  // Reports one at a time, in order; a failure is logged once per outage and the next report
  // retries.
  const publish = () => {
    chain = chain.then(report).catch((err: unknown) => {
      if (!warned) opts.logger.warn({ err }, 'publishing the proxy report failed');
      warned = true;
    });
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
      opts.load?.stop();
      await opts.redis
        .del(key)
        .catch((err: unknown) => opts.logger.warn({ err }, 'deleting the proxy report failed'));
    },
  };
}
