/**
 * Reconciliation pauses while PostgreSQL is away, and resumes at once when it returns.
 *
 * The durability rule (a transition is durable before its effect counts, docs/state-machines.md)
 * used to turn a store outage into churn: every effect's barrier failed, so a crashed replica's
 * restart failed ("restart failed: PostgreSQL unreachable"), then each replacement failed to
 * start, and so on for the whole outage. Here an effect that needs the store waits for it
 * instead of failing: it is not started before its transition is durable, and it is not
 * reported failed because the store was away. So an outage costs what was already broken
 * (capacity stays where it was) and nothing more; when the store answers again, each paused
 * effect runs once: exactly one recovery per replica that needed one.
 *
 * Only the store's own unavailability pauses (`store_unavailable` from a store call);
 * anything else still fails the effect as before.
 */
import { isFlotillaError } from '../domain/errors.ts';
import type { RuntimeLogger } from './runtime-deps.ts';

export interface StorePauseDeps {
  /** True when the store answers; never throws (Store.ping). */
  ping(): Promise<boolean>;
  /** Epoch ms. */
  now(): number;
  log: RuntimeLogger;
  /** Called once the store answers again, before paused effects go on (e.g. flush at once). */
  onBack?: () => void;
  /** How often to ask the store whether it is back. Default 250 ms. */
  pollMs?: number;
}

export interface PauseState {
  /** Epoch ms of the failure that started the pause. */
  since: number;
  reason: string;
}

export class StorePause {
  private away: PauseState | null = null;
  private waiters: Array<{ resolve: () => void; reject: (err: unknown) => void }> = [];
  private polling = false;
  private closed = false;
  private timer: ReturnType<typeof setTimeout> | null = null;

  constructor(private readonly deps: StorePauseDeps) {}

  /** Whether reconciliation is paused, since when and why; null when it is not. */
  state(): PauseState | null {
    return this.away;
  }

  /** One line for a deployment's status and `/ready`, or null. */
  describe(): string | null {
    const s = this.away;
    if (!s) return null;
    return `reconciliation paused since ${new Date(s.since).toISOString()}: the store is unreachable (${s.reason}); it resumes when the store answers`;
  }

  /** A store call failed: pauses when the store is away. True when `err` means that. */
  failed(err: unknown): boolean {
    if (!isStoreAway(err)) return false;
    if (!this.away) {
      const reason = err instanceof Error ? err.message : String(err);
      this.away = { since: this.deps.now(), reason };
      this.deps.log.warn({ reason }, 'store unreachable: reconciliation paused');
    }
    this.poll();
    return true;
  }

  /** A store call succeeded: resumes everything paused. */
  recovered(): void {
    if (!this.away) return;
    const pausedMs = this.deps.now() - this.away.since;
    this.away = null;
    this.deps.log.info({ pausedMs }, 'store reachable again: reconciliation resumed');
    this.deps.onBack?.();
    const waiters = this.waiters;
    this.waiters = [];
    for (const w of waiters) w.resolve();
  }

  /** Resolves when the store is not (or no longer) away. */
  untilBack(): Promise<void> {
    if (!this.away) return Promise.resolve();
    if (this.closed) return Promise.reject(closedError());
    return new Promise((resolve, reject) => {
      this.waiters.push({ resolve, reject });
      this.poll();
    });
  }

  /**
   * Runs `fn`, which needs the store; while it fails because the store is away, waits for the
   * store and runs it again. Other failures are `fn`'s own and reject at once.
   */
  async whileAway<T>(fn: () => Promise<T>): Promise<T> {
    for (;;) {
      await this.untilBack();
      try {
        const value = await fn();
        this.recovered();
        return value;
      } catch (err) {
        if (!this.failed(err)) throw err;
      }
    }
  }

  /** Stops polling; paused effects reject (the runtime is closing). Idempotent. */
  close(): void {
    this.closed = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    const waiters = this.waiters;
    this.waiters = [];
    for (const w of waiters) w.reject(closedError());
  }

  private poll(): void {
    if (this.polling || this.closed || !this.away) return;
    this.polling = true;
    const tick = () => {
      this.timer = setTimeout(async () => {
        this.timer = null;
        if (this.closed || !this.away) {
          this.polling = false;
          return;
        }
        if (await this.deps.ping()) {
          this.polling = false;
          this.recovered();
          return;
        }
        tick();
      }, this.deps.pollMs ?? 250);
      this.timer.unref?.();
    };
    tick();
  }
}

/** The store itself is unreachable (not a bad request, not a conflict). */
export function isStoreAway(err: unknown): boolean {
  return isFlotillaError(err) && err.code === 'store_unavailable';
}

function closedError(): Error {
  return new Error('runtime closed while reconciliation was paused for the store');
}
