import type { HealthRecord } from '../domain/health.ts';
import { defaultHealthLogger, deliverLater, type HealthLogger } from './health-log.ts';
import { copyHealthRecord } from './health-record-codec.ts';
import type { HealthStore } from './health-store.ts';

export interface MemoryHealthStoreOptions {
  /** Wall clock in epoch ms; injectable so tests can move time. Default `Date.now`. */
  now?: () => number;
  logger?: HealthLogger;
}

/**
 * The embedded health store (no REDIS_URL): one process, same TTL semantics as Redis. Expiry is
 * evaluated lazily against `now()` on every read, so a manual clock needs no timers; expired
 * entries are dropped when they are next looked at, and swept on `write` so a store whose
 * routes disappear does not grow without bound.
 */
export function createMemoryHealthStore(opts: MemoryHealthStoreOptions = {}): HealthStore {
  const now = opts.now ?? Date.now;
  let log: HealthLogger | undefined = opts.logger;
  const records = new Map<string, { record: HealthRecord; expiresAt: number }>();
  const probers = new Map<string, number>();
  const listeners = new Set<(record: HealthRecord) => void>();
  let closed = false;
  let writesSinceSweep = 0;

  const ttlMs = (ttlS: number) => Math.max(1, Math.round(ttlS * 1000));

  function sweep(t: number): void {
    for (const [id, e] of records) if (e.expiresAt <= t) records.delete(id);
    for (const [id, exp] of probers) if (exp <= t) probers.delete(id);
  }

  return {
    async write(record, ttlS) {
      const t = now();
      records.set(record.routeId, { record: copyHealthRecord(record), expiresAt: t + ttlMs(ttlS) });
      // Amortised: a full sweep every `size` writes keeps the cost O(1) per write.
      if (++writesSinceSweep >= Math.max(1024, records.size)) {
        writesSinceSweep = 0;
        sweep(t);
      }
    },

    async readMany(routeIds) {
      const t = now();
      const out = new Map<string, HealthRecord>();
      for (const id of routeIds) {
        const e = records.get(id);
        if (!e) continue;
        if (e.expiresAt <= t) {
          records.delete(id);
          continue;
        }
        out.set(id, copyHealthRecord(e.record));
      }
      return out;
    },

    async publishChange(record) {
      deliverLater(listeners, record, () => {
        log ??= defaultHealthLogger('memory-health-store');
        return log;
      });
    },

    async subscribe(listener) {
      // Wrap so the same function subscribed twice gets two independent subscriptions.
      const entry = (r: HealthRecord) => listener(r);
      listeners.add(entry);
      return async () => {
        listeners.delete(entry);
      };
    },

    async heartbeat(proberId, ttlS) {
      probers.set(proberId, now() + ttlMs(ttlS));
    },

    async members() {
      const t = now();
      const live: string[] = [];
      for (const [id, exp] of probers) {
        if (exp > t) live.push(id);
        else probers.delete(id);
      }
      return live.sort();
    },

    async leave(proberId) {
      probers.delete(proberId);
    },

    async ping() {
      return !closed;
    },

    async close() {
      closed = true;
      listeners.clear();
    },
  };
}
