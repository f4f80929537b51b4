/**
 * An adaptive concurrency limit for one replica, after Envoy's adaptive-concurrency filter
 * (gradient controller) and Netflix's concurrency-limits (Gradient2 / Vegas): the limit
 * follows the latency measured against its minimum, so it climbs to what the replica takes
 * with latency near its unloaded value and backs off when latency degrades.
 *
 *   every sample window (≥ windowMs and ≥ minSamples samples):
 *     sample   = median latency of the window
 *     gradient = clamp(minRtt × (1 + tolerance) / sample, 0.5, 2)
 *     limit    = clamp(limit × gradient + √limit, minLimit, maxLimit)
 *   (no growth while the replica is not used up to half its limit: an idle replica tells
 *   nothing about its capacity.)
 *   it starts at initialLimit (the fixed per-replica default), taking the fastest sample of
 *   its first window as minRtt, so a burst at start is served as in fixed mode; the first
 *   probe follows firstProbeMs (2 s) later, then every
 *   probeIntervalMs (jittered) the limit is pinned at probeLimit for one window and that
 *   window's median becomes the new minRtt (Envoy's minRTT recalculation), so the unloaded
 *   latency is measured unloaded and its drift followed; the limit then resumes where it was.
 *   a dropped request (timeout, 5xx, connection failure) cuts the limit by backoff (×0.9).
 *
 * Pure: no clock, no timers. The caller passes `now` (ms, any monotonic origin) and the
 * latency of each request; tests drive it on a virtual clock.
 */

export interface AdaptiveLimitOptions {
  /** Lowest limit (≥ 1). */
  minLimit: number;
  /** Highest limit: the variant's maximum (e.g. vLLM's --max-num-seqs). */
  maxLimit: number;
  /** Limit at start (the fixed per-replica default); default probeLimit. */
  initialLimit?: number;
  /** Concurrency while minRtt is measured; default min(maxLimit, max(minLimit, 3)) (Envoy's 3). */
  probeLimit?: number;
  /** Shortest sample window; default 250 ms. */
  windowMs?: number;
  /** Fewest samples in a window; default 5. */
  minSamples?: number;
  /** Latency allowed over minRtt before the limit shrinks; default 0.5 (50 %). */
  tolerance?: number;
  /** Time between minRtt re-measurements; default 60 s, plus up to 15 % jitter. */
  probeIntervalMs?: number;
  /** Time from the first window to the first probe; default min(probeIntervalMs, 2 s). */
  firstProbeMs?: number;
  /** Factor applied on a drop; default 0.9. */
  backoff?: number;
  /** Uniform [0, 1) for the probe jitter; default Math.random. */
  random?: () => number;
}

const MAX_WINDOW_SAMPLES = 256;

/** The state of one limit. Read `limit` (an integer ≥ minLimit) before each admission. */
export class AdaptiveLimit {
  /** The current limit, an integer in [minLimit, maxLimit]. */
  limit: number;
  /** The unloaded latency measured last (ms); undefined before the first probe ends. */
  minRtt: number | undefined = undefined;
  /** Whether the limit is pinned for a minRtt measurement. */
  probing = false;
  private estimate: number;
  private resumeAt: number;
  private readonly opts: Required<Omit<AdaptiveLimitOptions, 'initialLimit' | 'probeLimit'>> & {
    probeLimit: number;
  };
  private window: number[] = [];
  private windowStart: number | undefined = undefined;
  private windowMaxInflight = 0;
  private nextProbeAt = 0;

  constructor(options: AdaptiveLimitOptions) {
    const minLimit = Math.max(1, Math.floor(options.minLimit));
    const maxLimit = Math.max(minLimit, Math.floor(options.maxLimit));
    const probeLimit = Math.min(maxLimit, Math.max(minLimit, options.probeLimit ?? 3));
    this.opts = {
      minLimit,
      maxLimit,
      probeLimit,
      windowMs: options.windowMs ?? 250,
      minSamples: Math.max(1, options.minSamples ?? 5),
      tolerance: options.tolerance ?? 0.5,
      probeIntervalMs: options.probeIntervalMs ?? 60_000,
      firstProbeMs: options.firstProbeMs ?? Math.min(options.probeIntervalMs ?? 60_000, 2_000),
      backoff: options.backoff ?? 0.9,
      random: options.random ?? Math.random,
    };
    this.limit = Math.min(
      maxLimit,
      Math.max(minLimit, Math.floor(options.initialLimit ?? probeLimit)),
    );
    this.estimate = this.limit;
    this.resumeAt = this.limit;
  }

  get maxLimit(): number {
    return this.opts.maxLimit;
  }

  /**
   * One request's latency (ms; the time to its first response byte) measured at `now`, with
   * `inflight` requests running on the replica when it was sent. True when `limit` changed.
   */
  sample(now: number, latencyMs: number, inflight: number): boolean {
    if (!(latencyMs >= 0)) return false;
    // While probing, only requests sent at the probe's concurrency measure the unloaded
    // latency (those sent before the probe are still finishing at the old load).
    if (this.probing && inflight > this.opts.probeLimit) return false;
    if (this.windowStart === undefined) this.windowStart = now;
    if (this.window.length < MAX_WINDOW_SAMPLES) this.window.push(latencyMs);
    if (inflight > this.windowMaxInflight) this.windowMaxInflight = inflight;
    if (now - this.windowStart < this.opts.windowMs || this.window.length < this.opts.minSamples) {
      return false;
    }
    const median = medianOf(this.window);
    const maxInflight = this.windowMaxInflight;
    if (this.minRtt === undefined) {
      // First window: its fastest request is the best guess of the unloaded latency until
      // the first probe measures it.
      this.minRtt = Math.max(0.001, Math.min(...this.window));
      this.nextProbeAt = now + this.opts.firstProbeMs;
    }
    this.window = [];
    this.windowStart = undefined;
    this.windowMaxInflight = 0;
    return this.endWindow(now, median, maxInflight);
  }

  /** A request dropped (timeout, 5xx, refused connection). True when `limit` changed. */
  drop(): boolean {
    if (this.probing) return false;
    this.estimate = Math.max(this.opts.minLimit, this.estimate * this.opts.backoff);
    return this.publish();
  }

  private endWindow(now: number, median: number, maxInflight: number): boolean {
    const o = this.opts;
    if (this.probing) {
      this.minRtt = Math.max(median, 0.001);
      this.probing = false;
      this.estimate = this.resumeAt;
      this.nextProbeAt = now + o.probeIntervalMs * (1 + 0.15 * o.random());
      return this.publish();
    }
    if (now >= this.nextProbeAt) {
      this.probing = true;
      this.resumeAt = this.limit;
      this.estimate = o.probeLimit;
      return this.publish();
    }
    const minRtt = this.minRtt ?? median;
    const gradient = Math.min(
      2,
      Math.max(0.5, (minRtt * (1 + o.tolerance)) / Math.max(median, 0.001)),
    );
    // An under-used replica says nothing about its capacity: only shrink then.
    if (gradient >= 1 && maxInflight * 2 < this.limit) return false;
    const next = this.estimate * gradient + Math.sqrt(this.estimate);
    this.estimate = Math.min(
      o.maxLimit,
      Math.max(o.minLimit, gradient < 1 ? this.estimate * gradient : next),
    );
    return this.publish();
  }

  private publish(): boolean {
    const next = Math.min(
      this.opts.maxLimit,
      Math.max(this.opts.minLimit, Math.floor(this.estimate)),
    );
    if (next === this.limit) return false;
    this.limit = next;
    return true;
  }
}

function medianOf(xs: number[]): number {
  const s = xs.slice().sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}
