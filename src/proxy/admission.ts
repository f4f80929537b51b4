/**
 * Admission control for one deployment: bounded concurrency, a bounded priority queue with a
 * queue timeout, and graduated probabilistic rejection (docs/health-and-degradation.md).
 *
 * Load is the share of the deployment's admission room that is taken:
 *   load = (in flight + queued) / (capacity + max_queue_size),
 * where capacity = max_concurrent_requests × replicas that can serve now. Below
 * `rejection_threshold` (0.7) every request is admitted; between it and 1 a request is
 * rejected with probability (load − 0.7) / 0.3; at 1 every request is rejected. The queue
 * is measured in the same load, so it fills before the graduated zone bites. A request that
 * finds a free slot and an empty queue always runs: with a replica that batches hundreds
 * (capacity ≫ queue) the zone would otherwise begin before the replica is full.
 */
import type { ReplicaConcurrency } from '../domain/replica-concurrency.ts';
import { CONSERVATIVE_ADAPTIVE_MAX } from '../domain/replica-concurrency.ts';
import type { AdmissionMode, AdmissionProfile, DeploymentRoutes } from '../domain/routing.ts';

/** Per-deployment admission settings; snake_case like the rest of the deployment config. */
export interface AdmissionConfig {
  /**
   * Overall budget of a request, from arrival at the proxy to the first response byte:
   * queue wait plus every attempt. Past it the answer is 504 `upstream_timeout`. (The
   * routing config's `request_timeout_s` bounds each single attempt.)
   */
  request_timeout_s: number;
  /** Longest queue per deployment. */
  max_queue_size: number;
  /**
   * Requests in flight per servable replica; capacity = this × servable replicas. In
   * adaptive mode, the ceiling of each replica's adaptive limit.
   */
  max_concurrent_requests: number;
  /**
   * Share of the queue open to requests of default or lower priority (`x-flotilla-priority`
   * ≤ 0); the rest of the queue is kept for requests with a positive priority, so they still
   * get in when ordinary traffic has filled the queue.
   */
  queue_rejection_threshold: number;
  /** Load from which graduated probabilistic rejection starts (0.7 = 70 %). */
  rejection_threshold: number;
  /** Longest a request waits in the queue before 503 `overloaded`. */
  queue_timeout_s: number;
  /** `fixed` (default): max_concurrent_requests per replica; `adaptive`: a limit per replica following latency. */
  mode: AdmissionMode;
  /** Adaptive mode: each replica's limit at start (the fixed-mode default, within the ceiling). */
  initial_limit: number;
}

/**
 * The documented defaults (docs/health-and-degradation.md) for what does not depend on the
 * replica; queue timeout is ours: half the request budget. The per-replica concurrency
 * defaults to what the replica's runtime is launched with (src/domain/replica-concurrency.ts).
 */
export const ADMISSION_DEFAULTS: Readonly<AdmissionConfig> = Object.freeze({
  request_timeout_s: 60,
  max_queue_size: 50,
  // Only for a table that says nothing about its replicas (hand-written, or from a control
  // plane before replica_concurrency): the old default. Tables Flotilla builds always say.
  max_concurrent_requests: 3,
  queue_rejection_threshold: 0.8,
  rejection_threshold: 0.7,
  queue_timeout_s: 30,
  mode: 'fixed',
  initial_limit: 3,
});

/** The graceful-degradation guide's recommended settings, selectable as `admission.profile`. */
export const ADMISSION_PROFILES: Readonly<
  Record<
    AdmissionProfile,
    Readonly<
      Pick<AdmissionConfig, 'request_timeout_s' | 'max_queue_size' | 'max_concurrent_requests'>
    >
  >
> = Object.freeze({
  small: { request_timeout_s: 60, max_queue_size: 50, max_concurrent_requests: 3 },
  medium: { request_timeout_s: 90, max_queue_size: 100, max_concurrent_requests: 8 },
  large: { request_timeout_s: 120, max_queue_size: 200, max_concurrent_requests: 16 },
});

/** This proxy's part of the deployment's limits when several proxy workers share them. */
export interface WorkerShare {
  /** 0-based worker index. */
  index: number;
  /** Number of workers. */
  count: number;
}

/**
 * Worker `index`'s part of `total` when `count` workers split it: the parts sum to `total`
 * (the first `total mod count` workers get one more), and none is below `floor`.
 */
export function splitShare(total: number, share: WorkerShare | undefined, floor: number): number {
  if (!share || share.count <= 1) return total;
  const base = Math.floor(total / share.count);
  const extra = share.index < total % share.count ? 1 : 0;
  return Math.max(floor, base + extra);
}

function num(v: unknown, ok: (n: number) => boolean): number | undefined {
  return typeof v === 'number' && Number.isFinite(v) && ok(v) ? v : undefined;
}

/** The per-replica concurrency the table carries for a deployment, read defensively. */
function replicaConcurrency(d: DeploymentRoutes): ReplicaConcurrency | undefined {
  const rc = (d as { replica_concurrency?: Partial<ReplicaConcurrency> | null })
    .replica_concurrency;
  if (!rc || typeof rc !== 'object') return undefined;
  const fixed = num(rc.max_concurrent_requests, (n) => n >= 1);
  if (fixed === undefined) return undefined;
  const max = num(rc.max_limit, (n) => n >= 1) ?? fixed;
  return {
    max_concurrent_requests: Math.floor(fixed),
    max_limit: Math.floor(max),
    source: typeof rc.source === 'string' ? rc.source : 'table',
  };
}

/**
 * The admission settings of a deployment. Each field: the deployment's `admission` value,
 * else its `admission.profile`'s, else the default; the per-replica concurrency defaults to
 * the replica's runtime limit from the table (`replica_concurrency`), in adaptive mode to
 * its ceiling. Read defensively (the field may be absent, partial or wrong): an invalid value
 * falls back instead of breaking the data plane. With `share`, the concurrency and the queue
 * are this worker's part (README "Proxy workers").
 */
export function resolveAdmissionConfig(d: DeploymentRoutes, share?: WorkerShare): AdmissionConfig {
  const rawAny = (d as { admission?: Record<string, unknown> | null }).admission;
  const raw: Record<string, unknown> = rawAny && typeof rawAny === 'object' ? rawAny : {};
  const profile =
    typeof raw.profile === 'string' && Object.hasOwn(ADMISSION_PROFILES, raw.profile)
      ? ADMISSION_PROFILES[raw.profile as AdmissionProfile]
      : undefined;
  const mode: AdmissionMode = raw.mode === 'adaptive' ? 'adaptive' : 'fixed';
  const rc = replicaConcurrency(d);
  const replicaDefault =
    mode === 'adaptive'
      ? (rc?.max_limit ?? CONSERVATIVE_ADAPTIVE_MAX)
      : (rc?.max_concurrent_requests ?? ADMISSION_DEFAULTS.max_concurrent_requests);
  const positive = (n: number) => n > 0;
  const nonNegative = (n: number) => n >= 0;
  const fraction = (n: number) => n >= 0 && n <= 1;
  const perReplica = Math.max(
    1,
    Math.floor(
      num(raw.max_concurrent_requests, positive) ??
        profile?.max_concurrent_requests ??
        replicaDefault,
    ),
  );
  const queue = Math.floor(
    num(raw.max_queue_size, nonNegative) ??
      profile?.max_queue_size ??
      ADMISSION_DEFAULTS.max_queue_size,
  );
  return {
    request_timeout_s:
      num(raw.request_timeout_s, positive) ??
      profile?.request_timeout_s ??
      ADMISSION_DEFAULTS.request_timeout_s,
    max_queue_size: splitShare(queue, share, 0),
    max_concurrent_requests: splitShare(perReplica, share, 1),
    queue_rejection_threshold:
      num(raw.queue_rejection_threshold, fraction) ?? ADMISSION_DEFAULTS.queue_rejection_threshold,
    rejection_threshold:
      num(raw.rejection_threshold, fraction) ?? ADMISSION_DEFAULTS.rejection_threshold,
    queue_timeout_s: num(raw.queue_timeout_s, positive) ?? ADMISSION_DEFAULTS.queue_timeout_s,
    mode,
    initial_limit: splitShare(
      Math.min(
        perReplica,
        profile?.max_concurrent_requests ??
          rc?.max_concurrent_requests ??
          ADMISSION_DEFAULTS.max_concurrent_requests,
      ),
      share,
      1,
    ),
  };
}

/** Graduated rejection probability at `load` with the zone starting at `threshold`. */
export function rejectionProbability(load: number, threshold: number): number {
  if (load >= 1) return 1;
  if (load < threshold) return 0;
  if (threshold >= 1) return 1;
  return (load - threshold) / (1 - threshold);
}

/** Load level shown per deployment (docs/health-and-degradation.md "Status Levels"). */
export type AdmissionLevel = 'healthy' | 'stressed' | 'degraded' | 'critical';

/** A request waiting in the queue. The controller calls exactly one of grant/expire/evict. */
export interface Waiter {
  priority: number;
  /** A slot is now held for it; it must call `release()` once when done. */
  grant(): void;
  /** Its queue time ran out (queue timeout or its request deadline). */
  expire(): void;
  /** Capacity dropped to zero (nothing can serve): it must leave and be answered elsewhere. */
  evict(): void;
  /** @internal queue bookkeeping */
  timer?: NodeJS.Timeout | undefined;
}

/** Why a request was turned away at admission. */
export type RejectReason = 'overloaded' | 'queue_full';

/** What `admit` decided for one arriving request. */
export type AdmissionDecision =
  | { kind: 'run' }
  | { kind: 'queued' }
  | { kind: 'rejected'; reason: RejectReason; load: number };

const RUN: AdmissionDecision = Object.freeze({ kind: 'run' });
const QUEUED: AdmissionDecision = Object.freeze({ kind: 'queued' });

/**
 * Priority queue: higher priority first, FIFO within a priority. Small (bounded by
 * max_queue_size), so buckets in a sorted array are enough.
 */
export class PriorityQueue<T> {
  private buckets: { priority: number; items: T[] }[] = [];
  private count = 0;

  get size(): number {
    return this.count;
  }

  push(priority: number, item: T): void {
    let i = 0;
    while (i < this.buckets.length && this.buckets[i]!.priority > priority) i++;
    const b = this.buckets[i];
    if (b && b.priority === priority) b.items.push(item);
    else this.buckets.splice(i, 0, { priority, items: [item] });
    this.count++;
  }

  shift(): T | undefined {
    const b = this.buckets[0];
    if (!b) return undefined;
    const item = b.items.shift();
    if (b.items.length === 0) this.buckets.shift();
    this.count--;
    return item;
  }

  remove(item: T): boolean {
    for (let i = 0; i < this.buckets.length; i++) {
      const b = this.buckets[i]!;
      const j = b.items.indexOf(item);
      if (j >= 0) {
        b.items.splice(j, 1);
        if (b.items.length === 0) this.buckets.splice(i, 1);
        this.count--;
        return true;
      }
    }
    return false;
  }

  drain(): T[] {
    const all = this.buckets.flatMap((b) => b.items);
    this.buckets = [];
    this.count = 0;
    return all;
  }
}

/** Counters an admission controller reports to its owner (metrics). */
export interface AdmissionObserver {
  rejected(reason: RejectReason): void;
  queueTimedOut(): void;
}

/**
 * Admission state of one deployment. Invariants: `inflight` counts requests holding a slot
 * (each releases once); a request is started from the queue only while inflight < capacity;
 * the queue never holds more than max_queue_size; nothing is admitted at load ≥ 1.
 */
export class AdmissionController {
  config: AdmissionConfig;
  /** Slots: max_concurrent_requests × replicas that can serve now. */
  capacity = 0;
  inflight = 0;
  private readonly queue = new PriorityQueue<Waiter>();

  constructor(
    config: AdmissionConfig,
    private readonly random: () => number,
    private readonly observer?: AdmissionObserver,
  ) {
    this.config = config;
  }

  get queued(): number {
    return this.queue.size;
  }

  /** Current load in [0, ∞): taken admission room over total admission room. */
  load(): number {
    const room = this.capacity + this.config.max_queue_size;
    if (room <= 0) return this.inflight + this.queue.size > 0 ? 1 : 0;
    return (this.inflight + this.queue.size) / room;
  }

  /**
   * Decides for one arriving request. `run`: a slot is held, call `release()` when done.
   * `queued`: `waiter` is queued and will be granted, expired or evicted. `rejected`: nothing
   * is held. The caller checks capacity > 0 first (no capacity is `no_healthy_replicas`).
   */
  admit(waiter: Waiter): AdmissionDecision {
    // A free slot and nobody waiting: the replica can start it now, so it is never refused.
    if (this.inflight < this.capacity && this.queue.size === 0) {
      this.inflight++;
      return RUN;
    }
    const load = this.load();
    if (load >= this.config.rejection_threshold) {
      const p = rejectionProbability(load, this.config.rejection_threshold);
      if (p >= 1 || this.random() < p) {
        this.observer?.rejected('overloaded');
        return { kind: 'rejected', reason: 'overloaded', load };
      }
    }
    const q = this.queue.size;
    const ordinaryRoom = Math.floor(
      this.config.max_queue_size * this.config.queue_rejection_threshold,
    );
    if (q >= this.config.max_queue_size || (waiter.priority <= 0 && q >= ordinaryRoom)) {
      this.observer?.rejected('queue_full');
      return { kind: 'rejected', reason: 'queue_full', load };
    }
    this.queue.push(waiter.priority, waiter);
    return QUEUED;
  }

  /**
   * Arms the queue timer of a just-queued waiter: it expires after `maxWaitMs` (the shorter of
   * the queue timeout and what is left of its request budget).
   */
  armTimer(waiter: Waiter, maxWaitMs: number): void {
    waiter.timer = setTimeout(
      () => {
        waiter.timer = undefined;
        if (this.queue.remove(waiter)) {
          this.observer?.queueTimedOut();
          waiter.expire();
        }
      },
      Math.max(0, maxWaitMs),
    );
  }

  /** Removes a waiting request (its client left). True when it was still queued. */
  cancel(waiter: Waiter): boolean {
    if (!this.queue.remove(waiter)) return false;
    if (waiter.timer) clearTimeout(waiter.timer);
    waiter.timer = undefined;
    return true;
  }

  /** Gives back a slot held by a `run` decision or a granted waiter, then serves the queue. */
  release(): void {
    this.inflight--;
    this.pump();
  }

  /** New capacity (replicas came, went, were ejected or returned). */
  setCapacity(capacity: number): void {
    this.capacity = capacity;
    if (capacity <= 0) {
      for (const w of this.queue.drain()) {
        if (w.timer) clearTimeout(w.timer);
        w.timer = undefined;
        w.evict();
      }
      return;
    }
    this.pump();
  }

  /** Starts queued requests while slots are free. */
  pump(): void {
    while (this.inflight < this.capacity && this.queue.size > 0) {
      const w = this.queue.shift()!;
      if (w.timer) clearTimeout(w.timer);
      w.timer = undefined;
      this.inflight++;
      w.grant();
    }
  }

  /** Answers every queued request (shutdown). */
  evictAll(): void {
    for (const w of this.queue.drain()) {
      if (w.timer) clearTimeout(w.timer);
      w.timer = undefined;
      w.evict();
    }
  }

  /**
   * healthy: every request starts at once. stressed: requests wait in the queue.
   * degraded: graduated rejection is active (load ≥ rejection_threshold).
   * critical: ordinary-priority requests are refused outright (their part of the queue is
   * full, or load ≥ 1). The level is about load only; health is the deployment's state.
   */
  level(): AdmissionLevel {
    const load = this.load();
    const q = this.queue.size;
    const ordinaryRoom = Math.floor(
      this.config.max_queue_size * this.config.queue_rejection_threshold,
    );
    if (load >= 1 || (q > 0 && q >= ordinaryRoom)) return 'critical';
    if (load >= this.config.rejection_threshold) return 'degraded';
    if (q > 0 || (this.capacity > 0 && this.inflight >= this.capacity)) return 'stressed';
    return 'healthy';
  }
}

/** Numeric level for the metrics gauge. */
export const LEVEL_VALUE: Record<AdmissionLevel, number> = {
  healthy: 0,
  stressed: 1,
  degraded: 2,
  critical: 3,
};
