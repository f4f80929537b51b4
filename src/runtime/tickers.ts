/**
 * The runtime's periodic work and what its close undoes: intervals (unref'd, so they never
 * keep the process alive) whose failures are logged, and cleanups (unsubscribes) run once at
 * close, in the order they were added.
 */
export class Tickers {
  private readonly timers: Array<ReturnType<typeof setInterval>> = [];
  private readonly cleanups: Array<() => void | Promise<void>> = [];
  private stopped = false;

  constructor(private readonly onError: (err: unknown) => void) {}

  /** Runs `fn` every `seconds`; a rejection is reported to `onError`, the ticker goes on. */
  every(seconds: number, fn: () => Promise<unknown>): void {
    const t = setInterval(() => {
      fn().catch(this.onError);
    }, seconds * 1000);
    t.unref();
    this.timers.push(t);
  }

  /** Runs `fn` at `stop`; after `stop` it runs at once (a subscription that resolved late). */
  onStop(fn: () => void | Promise<void>): void {
    if (this.stopped) void Promise.resolve(fn()).catch(this.onError);
    else this.cleanups.push(fn);
  }

  /** Clears every interval, then runs the cleanups one after another. */
  async stop(): Promise<void> {
    this.stopped = true;
    for (const t of this.timers) clearInterval(t);
    this.timers.length = 0;
    const cleanups = this.cleanups.splice(0);
    for (const c of cleanups) await c();
  }
}
