/**
 * The autoscaling decision (the reference's ScalingHandler, README "Autoscaling"): pure, so
 * every rule is tested alone on a virtual clock.
 *
 * Threshold metrics (cpu, memory, requests, latency, inflight): a value per replica compared
 * with `scale_up_threshold` / `scale_down_threshold`. Above the upper one the deployment aims
 * for `target_value` (ceil(current × value / target_value)), at most `max_step` (1) more;
 * below the lower one it aims for the same, at most `max_step` fewer, and only when that
 * leaves the value at or under `target_value` (so a removal never crosses back up).
 *
 * `concurrency` (Knative's model): `target_value` is the requests in flight (queued included)
 * wanted per replica. The stable window's average demand sets the count; when the panic
 * window sees at least twice the target per replica (STARTING replicas count as capacity), it
 * scales up at once to what the panic demand needs, and nothing scales down until a stable
 * window has passed without panic.
 *
 * `cooldown_period` separates consecutive scaling operations, manual ones included; a panic
 * scale-up is the one exception (that is what the panic window is for).
 */

/** The metrics a policy may target (`scaling_policy.target_metric`). */
export const TARGET_METRICS = [
  'cpu',
  'memory',
  'requests',
  'latency',
  'inflight',
  'concurrency',
] as const;
export type TargetMetric = (typeof TARGET_METRICS)[number];

export interface ScalingPolicy {
  min_replicas?: number | undefined;
  max_replicas?: number | undefined;
  target_metric?: string | undefined;
  target_value?: number | undefined;
  scale_up_threshold?: number | undefined;
  scale_down_threshold?: number | undefined;
  cooldown_period?: number | undefined;
  /**
   * With `min_replicas` 0: seconds without a request after which the deployment drains to zero
   * replicas; the next request activates it (src/scaling/scale-to-zero.ts). Unset: never.
   */
  scale_to_zero_after_s?: number | undefined;

  /** Replicas added or removed per threshold step (default 1, the reference's ±1). */
  max_step?: number | undefined;
  /** `concurrency`: the averaging window that sets the replica count (s). */
  stable_window_s?: number | undefined;
  /** `concurrency`: the short window that detects a burst (s). */
  panic_window_s?: number | undefined;
}

/** The reference's defaults, and ours for the fields it does not have. */
export const POLICY_DEFAULTS = {
  min_replicas: 1,
  max_replicas: 10,
  target_metric: 'cpu',
  target_value: 70,
  scale_up_threshold: 80,
  scale_down_threshold: 30,
  cooldown_period: 60,
  max_step: 1,
  stable_window_s: 60,
  panic_window_s: 6,
} as const;

/** Panic when the panic window's demand per replica reaches this multiple of the target. */
export const PANIC_MULTIPLE = 2;

/** A policy with every default filled in and the deployment's bounds applied. */
export interface ResolvedPolicy {
  metric: TargetMetric;
  target: number;
  up: number;
  down: number;
  min: number;
  max: number;
  cooldownS: number;
  maxStep: number;
  stableS: number;
  panicS: number;
}

/**
 * Fills the defaults. Without explicit thresholds they follow `target_value` in the reference's
 * proportions (70 -> 80 / 30), so a `requests` policy with target 10 scales at 11.4 / 4.3.
 * Bounds: the policy's (default min 1, max the deployment's max_replicas, itself 10 by
 * default), kept inside the deployment's own min_replicas..max_replicas.
 */
export function resolvePolicy(
  p: ScalingPolicy,
  deployment: { min_replicas: number; max_replicas: number },
): ResolvedPolicy {
  const metric = (TARGET_METRICS as readonly string[]).includes(p.target_metric ?? '')
    ? (p.target_metric as TargetMetric)
    : POLICY_DEFAULTS.target_metric;
  const target = p.target_value ?? POLICY_DEFAULTS.target_value;
  const ratio = (v: number) => (target * v) / POLICY_DEFAULTS.target_value;
  const up = p.scale_up_threshold ?? ratio(POLICY_DEFAULTS.scale_up_threshold);
  const down = p.scale_down_threshold ?? ratio(POLICY_DEFAULTS.scale_down_threshold);
  const clamp = (n: number) =>
    Math.min(deployment.max_replicas, Math.max(deployment.min_replicas, n));
  const max = clamp(p.max_replicas ?? deployment.max_replicas);
  // Never below one replica: going to zero is the idle rule's (src/scaling/scale-to-zero.ts),
  // which also brings the deployment back on a request.
  const min = Math.min(
    max,
    Math.max(
      1,
      clamp(p.min_replicas ?? Math.max(POLICY_DEFAULTS.min_replicas, deployment.min_replicas)),
    ),
  );
  return {
    metric,
    target,
    up,
    down,
    min,
    max,
    cooldownS: p.cooldown_period ?? POLICY_DEFAULTS.cooldown_period,
    maxStep: Math.max(1, Math.trunc(p.max_step ?? POLICY_DEFAULTS.max_step)),
    stableS: p.stable_window_s ?? POLICY_DEFAULTS.stable_window_s,
    panicS: p.panic_window_s ?? POLICY_DEFAULTS.panic_window_s,
  };
}

/** What one evaluation of one deployment sees. */
export interface DecisionInput {
  policy: ResolvedPolicy;
  /** The target replica count now. */
  current: number;
  /** HEALTHY replicas that are not leaving. */
  healthy: number;
  /** STARTING replicas that are not leaving (capacity on the way). */
  starting: number;
  /** A replica of the deployment waits for node capacity: adding more would wait too. */
  waitingForCapacity: boolean;
  now: number;
  /** epoch ms of the last scaling operation (manual or automatic), or null. */
  lastScaledAt: number | null;
  /** `concurrency`: panic mode lasts until this instant (epoch ms), or null. */
  panicUntil: number | null;
  /**
   * Threshold metrics: the value per replica. `concurrency`: the stable window's average
   * demand (in flight + queued) over the whole deployment.
   */
  value: number;
  /** `concurrency`: the panic window's average demand over the whole deployment. */
  panicValue?: number;
  /**
   * Seconds of history the averaging window holds, when it is shorter than the window (after a
   * start or restart): no scale-down until the window is full. Undefined: full.
   */
  windowShortS?: number;
}

export type Direction = 'up' | 'down';

/** Why a crossed threshold did not lead to a scaling operation. */
export type HoldCause = 'cooldown' | 'bounds' | 'capacity' | 'target' | 'window';

export type Decision =
  | { kind: 'scale'; direction: Direction; to: number; panic: boolean; why: string }
  | { kind: 'hold'; direction: Direction; cause: HoldCause; wanted: number; why: string }
  | { kind: 'steady'; why: string };

export interface DecisionOutput {
  decision: Decision;
  /** The panic deadline after this evaluation (unchanged, extended or cleared). */
  panicUntil: number | null;
  /** Seconds of cooldown left at this evaluation. */
  cooldownLeftS: number;
  /** The value per replica shown in events (for concurrency: stable demand / capacity). */
  perReplica: number;
}

const fmt = (n: number) => (Number.isInteger(n) ? String(n) : n.toFixed(2));

export function cooldownLeftS(input: Pick<DecisionInput, 'policy' | 'lastScaledAt' | 'now'>) {
  if (input.lastScaledAt === null) return 0;
  const left = input.lastScaledAt + input.policy.cooldownS * 1000 - input.now;
  return left > 0 ? Math.ceil(left / 1000) : 0;
}

/** The decision for one deployment at one instant. */
export function decide(input: DecisionInput): DecisionOutput {
  const out =
    input.policy.metric === 'concurrency' ? decideConcurrency(input) : decideThreshold(input);
  const d = out.decision;
  // A window that is not full yet (after a start or restart) may only scale up.
  if (d.kind === 'scale' && d.direction === 'down' && input.windowShortS !== undefined) {
    return {
      ...out,
      decision: hold(
        'down',
        'window',
        d.to,
        `${d.why}; the window holds ${fmt(input.windowShortS)} s of history so far`,
      ),
    };
  }
  return out;
}

function decideThreshold(input: DecisionInput): DecisionOutput {
  const { policy: p, current, value: v } = input;
  const cooldown = cooldownLeftS(input);
  const out = (decision: Decision): DecisionOutput => ({
    decision,
    panicUntil: null,
    cooldownLeftS: cooldown,
    perReplica: v,
  });
  const aim = Math.ceil((Math.max(current, 1) * v) / p.target);
  if (v > p.up) {
    const wanted = Math.max(current + 1, Math.min(aim, current + p.maxStep));
    const to = Math.min(wanted, p.max);
    const why = `${fmt(v)} > scale_up_threshold ${fmt(p.up)}`;
    if (to <= current) return out(hold('up', 'bounds', wanted, `${why}; at max_replicas ${p.max}`));
    if (cooldown > 0) return out(hold('up', 'cooldown', to, `${why}; cooldown ${cooldown} s left`));
    if (input.waitingForCapacity) {
      return out(hold('up', 'capacity', to, `${why}; a replica already waits for node capacity`));
    }
    return out({ kind: 'scale', direction: 'up', to, panic: false, why });
  }
  if (v < p.down) {
    const wanted = Math.max(aim, current - p.maxStep, 0);
    const to = Math.max(wanted, p.min);
    const why = `${fmt(v)} < scale_down_threshold ${fmt(p.down)}`;
    if (to >= current) {
      if (current <= p.min) {
        return out(hold('down', 'bounds', wanted, `${why}; at min_replicas ${p.min}`));
      }
      return out(
        hold('down', 'target', current, `${why}; one replica fewer would exceed target_value`),
      );
    }
    // The value the remaining replicas would carry must not pass the target.
    const after = (v * current) / Math.max(1, to);
    if (after > p.target && p.metric !== 'latency') {
      return out(
        hold(
          'down',
          'target',
          to,
          `${why}; ${to} replica(s) would carry ${fmt(after)} > target_value ${fmt(p.target)}`,
        ),
      );
    }
    if (cooldown > 0) {
      return out(hold('down', 'cooldown', to, `${why}; cooldown ${cooldown} s left`));
    }
    return out({ kind: 'scale', direction: 'down', to, panic: false, why });
  }
  return out({
    kind: 'steady',
    why: `${fmt(v)} within ${fmt(p.down)}..${fmt(p.up)}`,
  });
}

function decideConcurrency(input: DecisionInput): DecisionOutput {
  const { policy: p, current, now } = input;
  const stable = input.value;
  const burst = input.panicValue ?? stable;
  const capacity = Math.max(1, input.healthy + input.starting);
  const cooldown = cooldownLeftS(input);
  const perReplica = stable / capacity;
  const out = (decision: Decision, panicUntil: number | null): DecisionOutput => ({
    decision,
    panicUntil,
    cooldownLeftS: cooldown,
    perReplica,
  });
  const need = (demand: number) => Math.ceil(demand / p.target);
  const bursting = burst / capacity >= PANIC_MULTIPLE * p.target;
  let panicUntil = input.panicUntil !== null && input.panicUntil > now ? input.panicUntil : null;
  if (bursting) panicUntil = now + p.stableS * 1000;

  if (panicUntil !== null) {
    const wanted = Math.max(current, need(burst), need(stable));
    const to = Math.min(wanted, p.max);
    const why = `panic: ${fmt(burst)} in flight over ${fmt(p.panicS)} s on ${capacity} replica(s) (>= ${PANIC_MULTIPLE} x target ${fmt(p.target)})`;
    if (wanted > current) {
      if (to <= current) {
        return out(hold('up', 'bounds', wanted, `${why}; at max_replicas ${p.max}`), panicUntil);
      }
      if (input.waitingForCapacity) {
        return out(
          hold('up', 'capacity', to, `${why}; a replica already waits for node capacity`),
          panicUntil,
        );
      }
      return out({ kind: 'scale', direction: 'up', to, panic: true, why }, panicUntil);
    }
    if (need(stable) < current && bursting) {
      return out(
        hold('down', 'target', current, `${why}; no scale-down while panicking`),
        panicUntil,
      );
    }
    if (need(stable) < current) {
      return out(
        hold(
          'down',
          'target',
          current,
          `panic mode until ${Math.ceil((panicUntil - now) / 1000)} s from now; no scale-down while panicking`,
        ),
        panicUntil,
      );
    }
    return out({ kind: 'steady', why }, panicUntil);
  }

  const desired = need(stable);
  const basis = `${fmt(stable)} in flight over ${fmt(p.stableS)} s, target ${fmt(p.target)} per replica`;
  if (desired > current) {
    const to = Math.min(desired, p.max);
    const why = `${basis}: ${desired} replica(s) needed`;
    if (to <= current)
      return out(hold('up', 'bounds', desired, `${why}; at max_replicas ${p.max}`), null);
    if (cooldown > 0)
      return out(hold('up', 'cooldown', to, `${why}; cooldown ${cooldown} s left`), null);
    if (input.waitingForCapacity) {
      return out(
        hold('up', 'capacity', to, `${why}; a replica already waits for node capacity`),
        null,
      );
    }
    return out({ kind: 'scale', direction: 'up', to, panic: false, why }, null);
  }
  if (desired < current) {
    const to = Math.max(desired, current - p.maxStep, p.min);
    const why = `${basis}: ${desired} replica(s) needed`;
    if (to >= current)
      return out(hold('down', 'bounds', desired, `${why}; at min_replicas ${p.min}`), null);
    if (cooldown > 0)
      return out(hold('down', 'cooldown', to, `${why}; cooldown ${cooldown} s left`), null);
    return out({ kind: 'scale', direction: 'down', to, panic: false, why }, null);
  }
  return out({ kind: 'steady', why: `${basis}: ${desired} replica(s) needed` }, null);
}

function hold(direction: Direction, cause: HoldCause, wanted: number, why: string): Decision {
  return { kind: 'hold', direction, cause, wanted, why };
}
