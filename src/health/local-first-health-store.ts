import type { HealthRecord } from '../domain/health.ts';
import { defaultHealthLogger, deliverLater, type HealthLogger } from './health-log.ts';
import { copyHealthRecord } from './health-record-codec.ts';
import type { HealthStore } from './health-store.ts';

export interface LocalFirstOptions {
  /** Wall clock in epoch ms for the local TTL. Default `Date.now`. */
  now?: () => number;
  logger?: HealthLogger;
}

/**
 * A shared health store (Redis) seen through this process's own probe results first: for a
 * process that runs the prober AND the coordinator or proxy (all-in-one with `--redis-url`).
 *
 * Why: with Redis alone in the loop, a result travels prober -> Redis -> pub/sub -> classifier,
 * so while Redis is down nothing arrives (a replica answering 503 kept its traffic for the whole
 * outage) and while it is up each change waits for two round trips. Here:
 * - `write` keeps the result in memory (same TTL) before it goes to Redis, and a result whose
 *   `ready` differs from the last one kept for the route (or the first) reaches this process's
 *   subscribers at once, on a later microtask, whether or not Redis answers;
 * - `publishChange` reaches local subscribers (unless `write` already delivered that result),
 *   then Redis for the other processes; its failure is still reported (the prober retries);
 * - `subscribe` listens locally and on Redis; a Redis message for a result already delivered
 *   locally is dropped;
 * - `readMany` merges Redis with the local results, the newer `checked_at` winning; when Redis
 *   fails it throws as before, and `readLocal` gives the results this process holds, so the
 *   classifier can keep classifying what it probes itself (fail static for the rest).
 * Membership, ping and close are Redis's.
 */
export function withLocalResults(remote: HealthStore, opts: LocalFirstOptions = {}): HealthStore {
  const now = opts.now ?? Date.now;
  let log: HealthLogger | undefined = opts.logger;
  const local = new Map<string, { record: HealthRecord; expiresAt: number }>();
  /** Per route: `checked_at` of the last result delivered to local subscribers. */
  const delivered = new Map<string, number>();
  const listeners = new Set<(record: HealthRecord) => void>();
  let writesSinceSweep = 0;

  function deliverLocally(record: HealthRecord): void {
    if ((delivered.get(record.routeId) ?? -1) >= record.checked_at) return;
    delivered.set(record.routeId, record.checked_at);
    // Never inside the writer's stack, as over Redis (the conformance suite's timing).
    deliverLater(listeners, record, () => {
      log ??= defaultHealthLogger('local-first-health-store');
      return log;
    });
  }

  function sweep(t: number): void {
    for (const [id, e] of local) {
      if (e.expiresAt <= t) {
        local.delete(id);
        delivered.delete(id);
      }
    }
  }

  function readLocal(routeIds: readonly string[]): Map<string, HealthRecord> {
    const t = now();
    const out = new Map<string, HealthRecord>();
    for (const id of routeIds) {
      const e = local.get(id);
      if (e && e.expiresAt > t) out.set(id, copyHealthRecord(e.record));
    }
    return out;
  }

  return {
    async write(record, ttlS) {
      const t = now();
      const prev = local.get(record.routeId);
      const newest = !prev || prev.record.checked_at <= record.checked_at;
      if (newest) {
        local.set(record.routeId, {
          record: copyHealthRecord(record),
          expiresAt: t + Math.max(1, Math.round(ttlS * 1000)),
        });
        const flipped = !prev || prev.expiresAt <= t || prev.record.ready !== record.ready;
        if (flipped) deliverLocally(record);
      }
      if (++writesSinceSweep >= Math.max(1024, local.size)) {
        writesSinceSweep = 0;
        sweep(t);
      }
      await remote.write(record, ttlS);
    },

    async readMany(routeIds) {
      const shared = await remote.readMany(routeIds);
      for (const [id, mine] of readLocal(routeIds)) {
        const theirs = shared.get(id);
        if (!theirs || theirs.checked_at < mine.checked_at) shared.set(id, mine);
      }
      return shared;
    },

    readLocal,

    async publishChange(record) {
      deliverLocally(record);
      await remote.publishChange(record);
    },

    async subscribe(listener) {
      const entry = (r: HealthRecord) => listener(r);
      listeners.add(entry);
      let unsubRemote: () => Promise<void>;
      try {
        unsubRemote = await remote.subscribe((r) => {
          // Already delivered from this process (the prober here wrote it): not twice.
          if ((delivered.get(r.routeId) ?? -1) >= r.checked_at) return;
          listener(r);
        });
      } catch (err) {
        listeners.delete(entry);
        throw err;
      }
      return async () => {
        listeners.delete(entry);
        await unsubRemote();
      };
    },

    heartbeat: (proberId, ttlS) => remote.heartbeat(proberId, ttlS),
    members: () => remote.members(),
    leave: (proberId) => remote.leave(proberId),
    ping: () => remote.ping(),

    async close() {
      listeners.clear();
      local.clear();
      delivered.clear();
      await remote.close();
    },
  };
}
