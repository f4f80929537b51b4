import type { Redis } from 'ioredis';

export interface ReconnectOptions {
  /** First background retry delay after a failed attempt (ms). Default 50. */
  minDelayMs?: number;
  /** Longest background retry delay (ms): how late a connection nobody uses comes back. Default 500. */
  maxDelayMs?: number;
  /** Least time between two attempts started on demand (ms), so a burst of commands during an outage makes one attempt, not one each. Default 100. */
  kickGapMs?: number;
  /** Monotonic ms. Default `performance.now`. */
  now?: () => number;
}

export interface Reconnector {
  /**
   * Resolves true once the client is ready. When it is not, starts an attempt now (unless one
   * is running or one started less than `kickGapMs` ago) and waits for its outcome, at most
   * `budgetMs`. Never throws.
   */
  whenReady(budgetMs: number): Promise<boolean>;
  /** Stops background attempts (before `quit` / `disconnect`). */
  stop(): void;
}

/**
 * ioredis options for a client that `keepConnected` manages: ioredis does not reconnect by
 * itself (its backoff grows to 2 s, so after Redis returned a tick could wait that long), and a
 * command sent while the connection is down fails at once ("Connection is closed") instead of
 * waiting in the offline queue for a reconnect.
 */
export const MANAGED_RECONNECT = { retryStrategy: () => null } as const;

/**
 * Reconnection on demand for an ioredis client created with `MANAGED_RECONNECT`:
 * - a command path calls `whenReady` first: a connection that is down is tried at once, so the
 *   first command after Redis returns (a classification tick, a probe write) connects and
 *   succeeds, instead of waiting out a backoff timer; while Redis is down the attempt fails at
 *   once (connection refused) and so does the command;
 * - in the background a connection that ended is retried with a short backoff (50 ms doubling
 *   to 500 ms), for connections that carry no commands (the subscriber, which ioredis
 *   re-subscribes on reconnect).
 * One attempt at a time; on-demand attempts at most every `kickGapMs`.
 */
export function keepConnected(client: Redis, opts: ReconnectOptions = {}): Reconnector {
  const minDelay = opts.minDelayMs ?? 50;
  const maxDelay = opts.maxDelayMs ?? 500;
  const gap = opts.kickGapMs ?? 100;
  const now = opts.now ?? (() => performance.now());
  let stopped = false;
  let failures = 0;
  let lastAttemptAt = Number.NEGATIVE_INFINITY;
  let timer: ReturnType<typeof setTimeout> | undefined;

  const down = () => client.status === 'end' || client.status === 'wait';

  function attempt(): void {
    if (stopped || !down()) return;
    if (timer) clearTimeout(timer);
    timer = undefined;
    lastAttemptAt = now();
    // The outcome arrives as 'ready' or 'end' events; the error is logged by the client's owner.
    client.connect().catch(() => {});
  }

  function scheduleRetry(): void {
    if (stopped || timer) return;
    const delay = Math.min(maxDelay, minDelay * 2 ** Math.min(failures, 16));
    failures++;
    timer = setTimeout(() => {
      timer = undefined;
      attempt();
    }, delay);
    timer.unref();
  }

  client.on('end', scheduleRetry);
  client.on('ready', () => {
    failures = 0;
  });

  return {
    whenReady(budgetMs) {
      if (client.status === 'ready') return Promise.resolve(true);
      if (stopped) return Promise.resolve(false);
      if (down()) {
        // An attempt failed less than `gap` ago: Redis is down, say so without another one.
        if (now() - lastAttemptAt < gap) return Promise.resolve(false);
        attempt();
      }
      return new Promise<boolean>((resolve) => {
        const finish = (ok: boolean) => {
          clearTimeout(t);
          client.off('ready', onReady);
          client.off('end', onEnd);
          resolve(ok);
        };
        const onReady = () => finish(true);
        // An 'end' emitted for an earlier attempt (events come on a later tick) is not this one's.
        const onEnd = () => {
          if (down()) finish(false);
        };
        const t = setTimeout(() => finish(client.status === 'ready'), Math.max(1, budgetMs));
        client.on('ready', onReady);
        client.on('end', onEnd);
      });
    },
    stop() {
      stopped = true;
      if (timer) clearTimeout(timer);
      timer = undefined;
    },
  };
}
