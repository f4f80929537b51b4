import type { HealthRecord } from '../domain/health.ts';
import { defaultHealthLogger, errorText, type HealthLogger } from './health-log.ts';
import type { HealthStore } from './health-store.ts';
import { createMemoryHealthStore } from './memory-health-store.ts';

export interface LocalFirstHealthStoreOptions {
  /** Longest wait for the shared store's `readMany` before answering from the local copy. Default 500. */
  remoteReadTimeoutMs?: number;
  /** Wait before subscribing to the shared store again after a failure. Default 2000. */
  resubscribeMs?: number;
  logger?: HealthLogger;
}

/**
 * A health store for a process that probes and classifies in one place (all-in-one with
 * Redis): the in-process prober's results land in a local memory store first and reach the
 * runtime from there, with the shared store (Redis) written as a side effect, never awaited.
 * Issue 15: with Redis in the loop a replica failing readiness kept its traffic for a whole
 * Redis outage, and even with Redis up every result waited for a round trip.
 *
 * - `write`/`publishChange`: local at once; the shared store in the background (its failures
 *   are logged once per outage: the next result writes again).
 * - `readMany`: local and shared together, newest `checked_at` per route (other probers'
 *   results come through the shared store); a shared store that has not answered within
 *   `remoteReadTimeoutMs` is left out.
 * - `subscribe`: local changes, and the shared store's (re-subscribed after a failure); a
 *   change this process published is delivered once, not again when it comes back from Redis.
 * - membership and `ping` are the shared store's.
 */
export function createLocalFirstHealthStore(
  remote: HealthStore,
  opts: LocalFirstHealthStoreOptions = {},
): HealthStore {
  const local = createMemoryHealthStore();
  const readTimeoutMs = opts.remoteReadTimeoutMs ?? 500;
  const resubscribeMs = opts.resubscribeMs ?? 2000;
  const log = opts.logger ?? defaultHealthLogger('local-first-health-store');
  let remoteDown = false;
  let closed = false;
  /** What this process published last, per route: the echo from Redis is not delivered again. */
  const publishedHere = new Map<string, string>();
  const fingerprint = (r: HealthRecord) =>
    `${r.checked_at}|${r.ready}|${r.consecutive_successes}|${r.consecutive_failures}`;

  const background = (op: string, p: Promise<unknown>) => {
    p.then(
      () => {
        if (!remoteDown) return;
        remoteDown = false;
        log.info({ op }, 'shared health store reachable again');
      },
      (err: unknown) => {
        if (remoteDown || closed) return;
        remoteDown = true;
        log.warn(
          { op, err: errorText(err) },
          'shared health store unreachable; health stays in process until it returns',
        );
      },
    );
  };

  return {
    async write(record, ttlS) {
      await local.write(record, ttlS);
      background('write', remote.write(record, ttlS));
    },

    async readMany(routeIds) {
      const mine = await local.readMany(routeIds);
      let timer: NodeJS.Timeout | undefined;
      const timeout = new Promise<undefined>((resolve) => {
        timer = setTimeout(() => resolve(undefined), readTimeoutMs);
      });
      const shared = await Promise.race([
        remote.readMany(routeIds).catch(() => undefined),
        timeout,
      ]).finally(() => clearTimeout(timer));
      if (!shared) return mine;
      for (const [id, record] of shared) {
        const own = mine.get(id);
        if (!own || record.checked_at > own.checked_at) mine.set(id, record);
      }
      return mine;
    },

    async publishChange(record) {
      publishedHere.set(record.routeId, fingerprint(record));
      await local.publishChange(record);
      background('publishChange', remote.publishChange(record));
    },

    async subscribe(listener) {
      const offLocal = await local.subscribe(listener);
      let offRemote: (() => Promise<void>) | undefined;
      let stopped = false;
      let retry: NodeJS.Timeout | undefined;
      const fromRemote = (record: HealthRecord) => {
        if (publishedHere.get(record.routeId) === fingerprint(record)) return;
        listener(record);
      };
      const attach = () => {
        remote.subscribe(fromRemote).then(
          (off) => {
            if (stopped) void off().catch(() => {});
            else offRemote = off;
          },
          (err: unknown) => {
            if (stopped || closed) return;
            log.warn(
              { err: errorText(err) },
              'subscribing to the shared health store failed; retrying',
            );
            retry = setTimeout(attach, resubscribeMs);
            retry.unref();
          },
        );
      };
      attach();
      return async () => {
        stopped = true;
        clearTimeout(retry);
        await offLocal();
        await offRemote?.();
      };
    },

    heartbeat: (proberId, ttlS) => remote.heartbeat(proberId, ttlS),
    members: () => remote.members(),
    leave: (proberId) => remote.leave(proberId),
    ping: () => remote.ping(),

    async close() {
      closed = true;
      await local.close();
      await remote.close();
    },
  };
}
