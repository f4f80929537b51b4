/**
 * A proxy in its own process (`serve --role proxy`) publishes its per-deployment load counters
 * (src/scaling/load-counters.ts) for the coordinator's autoscaler.
 *
 * Each proxy owns one Redis string, `<prefix>load:<proxyId>`: the JSON of its latest
 * LoadReport (its identity, when it was read, cumulative counters per deployment). It is
 * rewritten about once a second and expires after a few missed reports, so a proxy whose key
 * is gone is not live (src/runtime/cluster-load.ts, the reader, sums the live ones).
 */
import type { Redis } from 'ioredis';
import type { Logger } from 'pino';
import type { LoadCounters } from '../scaling/load-counters.ts';

/** The key of one proxy's load report. */
export function loadKey(keyPrefix: string, proxyId: string): string {
  return `${keyPrefix}load:${proxyId}`;
}

export const DEFAULT_LOAD_INTERVAL_MS = 1_000;
export const DEFAULT_LOAD_TTL_MS = 3_000;

export interface LoadPublisher {
  /** Writes one report now. */
  publish(): Promise<void>;
  /** Stops publishing and deletes the key (the proxy is gone). */
  close(): Promise<void>;
}

export function startLoadPublisher(opts: {
  redis: Redis;
  keyPrefix: string;
  proxyId: string;
  counters: LoadCounters;
  logger: Logger;
  intervalMs?: number;
  ttlMs?: number;
}): LoadPublisher {
  const key = loadKey(opts.keyPrefix, opts.proxyId);
  const ttlMs = opts.ttlMs ?? DEFAULT_LOAD_TTL_MS;
  let closed = false;
  let warned = false;
  let chain: Promise<void> = Promise.resolve();
  const report = async () => {
    if (closed) return;
    const r = await opts.counters.report();
    await opts.redis.set(key, JSON.stringify(r), 'PX', ttlMs);
    if (warned) opts.logger.info({}, 'publishing load counters works again');
    warned = false;
  };
  // One report at a time; a failure is logged once per outage and the next report retries.
  const publish = () => {
    chain = chain.then(report).catch((err: unknown) => {
      if (!warned) opts.logger.warn({ err }, 'publishing load counters failed');
      warned = true;
    });
    return chain;
  };
  const timer = setInterval(() => void publish(), opts.intervalMs ?? DEFAULT_LOAD_INTERVAL_MS);
  timer.unref();
  void publish();
  return {
    publish,
    async close() {
      if (closed) return;
      clearInterval(timer);
      await chain;
      closed = true;
      opts.counters.stop();
      await opts.redis
        .del(key)
        .then(() => undefined)
        .catch((err: unknown) => opts.logger.warn({ err }, 'deleting the load report failed'));
    },
  };
}
