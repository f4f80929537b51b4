/**
 * Passive outlier detection: consecutive failures on live traffic take a replica out of this
 * proxy's rotation for a backoff, before the prober notices. Ejection time doubles with each
 * ejection in a row (capped); a returned replica is on probation, where one failure ejects it
 * again and one success clears its record.
 */

/** Outlier detection settings (per proxy). */
export interface OutlierConfig {
  /** Consecutive failures (connection error, timeout or 5xx) that eject a replica. */
  consecutive_failures: number;
  /** First ejection time; doubled for each ejection in a row. */
  base_ejection_ms: number;
  /** Longest ejection time. */
  max_ejection_ms: number;
  /**
   * Largest share of a deployment's servable replicas ejected at once, in percent. At least
   * one replica is always allowed to be ejected when there are two or more, and the last one
   * never is: with nothing left the proxy would refuse traffic a replica might still serve.
   */
  max_ejection_percent: number;
}

/** Envoy-like defaults: 5 in a row, 1 s doubling to 30 s, at most half the replicas. */
export const OUTLIER_DEFAULTS: Readonly<OutlierConfig> = Object.freeze({
  consecutive_failures: 5,
  base_ejection_ms: 1_000,
  max_ejection_ms: 30_000,
  max_ejection_percent: 50,
});

/** The outlier bookkeeping a replica carries (Upstream implements it). */
export interface OutlierSubject {
  failures: number;
  ejected: boolean;
  /** Ejections in a row, for the backoff. */
  ejections: number;
  probation: boolean;
  ejectTimer: NodeJS.Timeout | undefined;
}

/** What the detector needs from its owner: a replica's peers, and where to report. */
export interface OutlierHooks<S extends OutlierSubject> {
  /** The replicas `s` competes with (its deployment's servable ones), to cap ejections. */
  peers(s: S): readonly S[];
  ejected(s: S, reason: string, ejectionMs: number, consecutiveFailures: number): void;
  returned(s: S): void;
}

/**
 * Per-proxy passive outlier detection. Invariants: a replica is ejected at most once at a time,
 * every ejection is followed by exactly one return (or a `forget`), and at least one of a
 * deployment's servable replicas always stays in rotation.
 */
export class OutlierDetector<S extends OutlierSubject> {
  readonly config: OutlierConfig;

  constructor(
    config: Partial<OutlierConfig> | undefined,
    private readonly hooks: OutlierHooks<S>,
  ) {
    this.config = { ...OUTLIER_DEFAULTS, ...config };
  }

  /** A response below 500 (or a clean stream) from `s`. */
  success(s: S): void {
    s.failures = 0;
    if (s.probation) {
      s.probation = false;
      s.ejections = 0;
    }
  }

  /** A connection error, attempt timeout or 5xx from `s`. */
  failure(s: S, reason: string): void {
    if (s.ejected) return;
    s.failures++;
    const threshold = s.probation ? 1 : this.config.consecutive_failures;
    if (s.failures < threshold) return;
    const peers = this.hooks.peers(s);
    if (!peers.includes(s)) return;
    let ejectedNow = 0;
    for (const p of peers) if (p.ejected) ejectedNow++;
    const n = peers.length;
    const allowed =
      n >= 2 ? Math.max(1, Math.floor((n * this.config.max_ejection_percent) / 100)) : 0;
    if (ejectedNow >= Math.min(allowed, n - 1)) return;
    const failures = s.failures;
    s.ejected = true;
    s.ejections++;
    s.probation = false;
    const ms = Math.min(
      this.config.max_ejection_ms,
      this.config.base_ejection_ms * 2 ** Math.min(30, s.ejections - 1),
    );
    s.ejectTimer = setTimeout(() => this.restore(s), ms);
    s.ejectTimer.unref?.();
    this.hooks.ejected(s, reason, ms, failures);
  }

  /** Puts `s` back in rotation now (backoff over, or its deployment would have none left). */
  restore(s: S): void {
    if (s.ejectTimer) clearTimeout(s.ejectTimer);
    s.ejectTimer = undefined;
    if (!s.ejected) return;
    s.ejected = false;
    s.failures = 0;
    s.probation = true;
    this.hooks.returned(s);
  }

  /** Forgets `s` (it left the table): no timer keeps running for it. */
  forget(s: S): void {
    if (s.ejectTimer) clearTimeout(s.ejectTimer);
    s.ejectTimer = undefined;
  }
}
