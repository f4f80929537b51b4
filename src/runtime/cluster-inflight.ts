/**
 * The coordinator's view of requests in flight at proxies in other processes, read from the
 * reports those proxies write to Redis (src/proxy/inflight-publisher.ts). A route's drain waits
 * here until every live proxy has reported, after the drain began, zero requests to the route.
 */
import { Redis } from 'ioredis';
import {
  INFLIGHT_SEQ_FIELD,
  inflightKey,
  LAST_REQUEST_FIELD_PREFIX,
} from '../proxy/inflight-publisher.ts';
import type { RuntimeLogger } from './runtime-deps.ts';

/** One live proxy's latest report. */
export interface ProxyInflightReport {
  seq: number;
  /** routeId -> requests in flight (routes without requests are absent). */
  counts: Map<string, number>;
  /** deploymentId -> epoch ms of its last request at this proxy (scale to zero's idle signal). */
  lastRequests: Map<string, number>;
}

export interface ClusterInflight {
  /** The latest report of every live proxy (one whose key has not expired), by proxy id. */
  reports(): Promise<Map<string, ProxyInflightReport>>;
  /**
   * Resolves once every live proxy has reported zero requests to the route in a report written
   * after this call began (so a proxy that had not yet seen the route leave its table is
   * waited for), or when `signal` aborts. Redis errors are logged and retried until then.
   */
  waitDrained(routeId: string, signal: AbortSignal): Promise<void>;
  /** The latest request per deployment id over every live proxy, epoch ms. */
  lastRequests(): Promise<Map<string, number>>;
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

export function createClusterInflight(opts: {
  url: string;
  keyPrefix: string;
  logger?: RuntimeLogger | undefined;
  /** How often a waiting drain re-reads the reports. Default 100 ms. */
  pollMs?: number;
}): ClusterInflight {
  const redis = new Redis(opts.url, {
    maxRetriesPerRequest: 2,
    connectionName: 'flotilla-inflight-reader',
  });
  // Errors surface on the commands; the client reconnects by itself.
  redis.on('error', () => {});
  const pollMs = opts.pollMs ?? 100;
  const keyOf = (proxyId: string) => inflightKey(opts.keyPrefix, proxyId);
  const keyStart = keyOf('').length;
  const match = `${globEscape(opts.keyPrefix)}inflight:*`;

  async function reports(): Promise<Map<string, ProxyInflightReport>> {
    const keys: string[] = [];
    let cursor = '0';
    do {
      const [next, batch] = await redis.scan(cursor, 'MATCH', match, 'COUNT', 500);
      cursor = next;
      keys.push(...batch);
    } while (cursor !== '0');
    const out = new Map<string, ProxyInflightReport>();
    if (keys.length === 0) return out;
    const pipeline = redis.pipeline();
    for (const k of keys) pipeline.hgetall(k);
    const results = (await pipeline.exec()) ?? [];
    keys.forEach((k, i) => {
      const [err, hash] = results[i] ?? [null, null];
      if (err) throw err;
      const fields = hash as Record<string, string> | null;
      // Expired between SCAN and HGETALL: not live.
      if (!fields || fields[INFLIGHT_SEQ_FIELD] === undefined) return;
      const counts = new Map<string, number>();
      const lastRequests = new Map<string, number>();
      for (const [f, v] of Object.entries(fields)) {
        if (f.startsWith(LAST_REQUEST_FIELD_PREFIX)) {
          lastRequests.set(f.slice(LAST_REQUEST_FIELD_PREFIX.length), Number(v));
        } else if (!f.startsWith('_')) counts.set(f, Number(v));
      }
      out.set(k.slice(keyStart), {
        seq: Number(fields[INFLIGHT_SEQ_FIELD]),
        counts,
        lastRequests,
      });
    });
    return out;
  }

  async function waitDrained(routeId: string, signal: AbortSignal): Promise<void> {
    let before: Map<string, ProxyInflightReport> | null = null;
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

  return {
    reports,
    waitDrained,
    lastRequests,
    async close() {
      redis.disconnect();
    },
  };
}
