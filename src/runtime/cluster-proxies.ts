/**
 * The coordinator's view of the proxies in other processes, read from the reports they write
 * to Redis (src/proxy/proxy-report.ts): requests in flight per route (a route's drain waits here
 * until every live proxy has reported, after the drain began, zero requests to the route), the
 * last request per deployment (scale to zero) and the load reports the autoscaler sums
 * (src/scaling/load-windows.ts). A proxy whose key expired is not live.
 */
import { Redis } from 'ioredis';
import { type ProxyReport, parseProxyReport, proxyReportKey } from '../proxy/proxy-report.ts';
import type { LoadReport } from '../scaling/load-report.ts';
import type { RuntimeLogger } from './runtime-deps.ts';

export type { ProxyReport } from '../proxy/proxy-report.ts';

export interface ClusterProxies {
  /**
   * The latest report of every live proxy (one whose key has not expired), by proxy id.
   * Throws when Redis does not answer.
   */
  reports(): Promise<Map<string, ProxyReport>>;
  /**
   * Resolves once every live proxy has reported zero requests to the route in a report written
   * after this call began (so a proxy that had not yet seen the route leave its table is
   * waited for), or when `signal` aborts. Redis errors are logged and retried until then.
   */
  waitDrained(routeId: string, signal: AbortSignal): Promise<void>;
  /** The latest request per deployment id over every live proxy, epoch ms. */
  lastRequests(): Promise<Map<string, number>>;
  /** The latest load report of every live proxy that keeps one. Throws when Redis does not answer. */
  loadReports(): Promise<LoadReport[]>;
  close(): Promise<void>;
}

/** `*?[]\` are glob characters in SCAN MATCH. */
function globEscape(s: string): string {
  return s.replace(/[*?[\]\\]/g, '\\$&');
}

function abortableSleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve();
    const done = () => {
      clearTimeout(t);
      signal.removeEventListener('abort', done);
      resolve();
    };
    const t = setTimeout(done, ms);
    signal.addEventListener('abort', done, { once: true });
  });
}

export function createClusterProxies(opts: {
  url: string;
  keyPrefix: string;
  logger?: RuntimeLogger | undefined;
  /** How often a waiting drain re-reads the reports. Default 100 ms. */
  pollMs?: number;
}): ClusterProxies {
  const redis = new Redis(opts.url, {
    maxRetriesPerRequest: 2,
    connectionName: 'flotilla-proxy-reports',
  });
  // Errors surface on the commands (drains log and retry, the autoscaler reports a missing
  // metric); the client reconnects by itself.
  redis.on('error', () => {});
  const pollMs = opts.pollMs ?? 100;
  const keyStart = proxyReportKey(opts.keyPrefix, '').length;
  const match = `${globEscape(proxyReportKey(opts.keyPrefix, ''))}*`;

  async function reports(): Promise<Map<string, ProxyReport>> {
    const keys: string[] = [];
    let cursor = '0';
    do {
      const [next, batch] = await redis.scan(cursor, 'MATCH', match, 'COUNT', 500);
      cursor = next;
      keys.push(...batch);
    } while (cursor !== '0');
    const out = new Map<string, ProxyReport>();
    if (keys.length === 0) return out;
    const pipeline = redis.pipeline();
    for (const k of keys) pipeline.hgetall(k);
    const results = (await pipeline.exec()) ?? [];
    keys.forEach((k, i) => {
      const [err, hash] = results[i] ?? [null, null];
      if (err) throw err;
      // Expired between SCAN and HGETALL: not live.
      const report = parseProxyReport(hash as Record<string, string> | null);
      if (report) out.set(k.slice(keyStart), report);
    });
    return out;
  }

  async function waitDrained(routeId: string, signal: AbortSignal): Promise<void> {
    let before: Map<string, ProxyReport> | null = null;
    let warned = false;
    while (!signal.aborted) {
      try {
        const now = await reports();
        if (before === null) {
          // No live proxy at all: nothing can be in flight elsewhere.
          if (now.size === 0) return;
          before = now;
        } else {
          const drained = [...now].every(([id, r]) => {
            const seenBefore = before?.get(id);
            const fresh = !seenBefore || r.seq !== seenBefore.seq;
            return fresh && (r.counts.get(routeId) ?? 0) === 0;
          });
          if (drained) return;
        }
      } catch (err) {
        // Once per drain: Redis being down would otherwise log every poll until the deadline.
        if (!warned) opts.logger?.warn({ err, routeId }, 'reading proxies in-flight counts failed');
        warned = true;
      }
      await abortableSleep(pollMs, signal);
    }
  }

  async function lastRequests(): Promise<Map<string, number>> {
    const out = new Map<string, number>();
    for (const r of (await reports()).values()) {
      for (const [id, at] of r.lastRequests) {
        if (Number.isFinite(at) && at > (out.get(id) ?? 0)) out.set(id, at);
      }
    }
    return out;
  }

  async function loadReports(): Promise<LoadReport[]> {
    return [...(await reports()).values()].flatMap((r) => (r.load ? [r.load] : []));
  }

  return {
    reports,
    waitDrained,
    lastRequests,
    loadReports,
    async close() {
      redis.disconnect();
    },
  };
}
