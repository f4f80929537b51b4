/**
 * The clock the machines' deadline timers run on (machines/deadline-timer.ts): one min-heap of
 * pending deadlines behind a single platform timer, instead of one platform timer per actor.
 *
 * Why: a restored fleet re-arms every deadline at once. With 40,000 replicas in STARTING whose
 * startup deadlines passed while the coordinator was down, every one of them fired in the same
 * tick, inside the restore, each doing a transition, a write and a routing change (a restore
 * 20 minutes after creation spent about half its time there). Here:
 *   - while `hold()` is in force (the runtime's `start`, until the restored tree is reconciled
 *     and published) nothing fires: deadlines that expired while the coordinator was down are
 *     evaluated after restore, not during it;
 *   - due deadlines fire in batches of at most `batch`, each batch in its own macrotask, so an
 *     expired fleet is worked through without stalling the event loop (and the in-process
 *     proxy on it) and writes coalesce into the snapshot writer's flushes;
 *   - a pending deadline costs one small heap entry, not a platform timer object.
 * Semantics are those of the timers it replaces: a callback runs at or after its due time,
 * never before; callbacks due at the same time run in the order they were set; a cleared one
 * never runs. A STARTING replica past its startup deadline still fails (it does so just after
 * the restore instead of during it). Time (`now`) and the one platform timer come from `base`,
 * so a manual clock drives it in tests.
 */
import type { MachineClock } from '../../machines/clock.ts';

interface Entry {
  due: number;
  seq: number;
  fn: (() => void) | null;
}

/** Deadlines run per macrotask when many are due at once. */
export const DEFAULT_DEADLINE_BATCH = 256;

export class DeadlineScheduler implements MachineClock {
  private readonly heap: Entry[] = [];
  private seq = 0;
  /** The one platform timer (armed for the earliest due entry, or for the next batch). */
  private timer: unknown = null;
  private timerDue = Number.POSITIVE_INFINITY;
  private holds = 0;
  private closed = false;
  /** Cleared entries still in the heap; compacted away when they are most of it. */
  private cleared = 0;
  private readonly batch: number;

  /** `held`: start as if `hold()` had been called (the runtime releases it when restored). */
  constructor(
    private readonly base: MachineClock,
    opts: { batch?: number; held?: boolean } = {},
  ) {
    this.batch = Math.max(1, opts.batch ?? DEFAULT_DEADLINE_BATCH);
    if (opts.held) this.holds = 1;
  }

  now(): number {
    return this.base.now();
  }

  setTimeout(fn: () => void, ms: number): unknown {
    const entry: Entry = { due: this.base.now() + Math.max(0, ms), seq: this.seq++, fn };
    if (this.closed) return entry;
    this.push(entry);
    this.arm();
    return entry;
  }

  /**
   * Cleared entries stay in the heap, inert, until they reach its top or the heap is compacted
   * (when more than half of it is cleared): O(1) per clear, the heap bounded by twice the live.
   */
  clearTimeout(id: unknown): void {
    if (!id || typeof id !== 'object' || !('fn' in id)) return;
    const e = id as Entry;
    if (!e.fn) return;
    e.fn = null;
    if (this.heap.length === 0) return;
    this.cleared++;
    // Everything cleared (the tree stopped): no platform timer may keep the process alive.
    if (this.cleared >= this.heap.length) {
      this.heap.length = 0;
      this.cleared = 0;
      this.disarm();
    } else if (this.cleared > 1024 && this.cleared * 2 > this.heap.length) this.compact();
  }

  /** Pending (not cleared) deadlines, for tests and diagnostics. */
  get pending(): number {
    let n = 0;
    for (const e of this.heap) if (e.fn) n++;
    return n;
  }

  /** Nothing fires until as many `release()` calls; deadlines keep accumulating meanwhile. */
  hold(): void {
    this.holds++;
    this.disarm();
  }

  release(): void {
    if (this.holds === 0) return;
    this.holds--;
    this.arm();
  }

  /** Drops every pending deadline and the platform timer; later ones are ignored. */
  close(): void {
    this.closed = true;
    this.disarm();
    for (const e of this.heap) e.fn = null;
    this.heap.length = 0;
    this.cleared = 0;
  }

  private arm(): void {
    if (this.holds > 0 || this.closed) return;
    this.dropCleared();
    const top = this.heap[0];
    if (!top) {
      this.disarm();
      return;
    }
    if (this.timer !== null && this.timerDue <= top.due) return;
    this.disarm();
    this.timerDue = top.due;
    this.timer = this.base.setTimeout(
      () => {
        this.timer = null;
        this.timerDue = Number.POSITIVE_INFINITY;
        this.run();
      },
      Math.max(0, top.due - this.base.now()),
    );
  }

  private disarm(): void {
    if (this.timer !== null) this.base.clearTimeout(this.timer);
    this.timer = null;
    this.timerDue = Number.POSITIVE_INFINITY;
  }

  /** Runs up to `batch` due callbacks, then re-arms (at once when more are due). */
  private run(): void {
    const now = this.base.now();
    let ran = 0;
    while (ran < this.batch && this.holds === 0 && !this.closed) {
      this.dropCleared();
      const top = this.heap[0];
      if (!top || top.due > now) break;
      this.pop();
      const fn = top.fn;
      top.fn = null;
      ran++;
      fn?.();
    }
    this.arm();
  }

  private dropCleared(): void {
    while (this.heap.length > 0 && !(this.heap[0] as Entry).fn) {
      this.pop();
      if (this.cleared > 0) this.cleared--;
    }
  }

  /** Rebuilds the heap from its live entries (the platform timer stays as armed). */
  private compact(): void {
    const live = this.heap.filter((e) => e.fn);
    this.heap.length = 0;
    this.cleared = 0;
    for (const e of live) this.push(e);
  }

  private before(a: Entry, b: Entry): boolean {
    return a.due < b.due || (a.due === b.due && a.seq < b.seq);
  }

  private push(e: Entry): void {
    const h = this.heap;
    let i = h.push(e) - 1;
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (!this.before(e, h[p] as Entry)) break;
      h[i] = h[p] as Entry;
      i = p;
    }
    h[i] = e;
  }

  private pop(): void {
    const h = this.heap;
    const last = h.pop() as Entry;
    if (h.length === 0) return;
    let i = 0;
    for (;;) {
      const l = 2 * i + 1;
      if (l >= h.length) break;
      const r = l + 1;
      const c = r < h.length && this.before(h[r] as Entry, h[l] as Entry) ? r : l;
      if (!this.before(h[c] as Entry, last)) break;
      h[i] = h[c] as Entry;
      i = c;
    }
    h[i] = last;
  }
}
