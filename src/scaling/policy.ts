/**
 * The autoscaling decision (the reference's ScalingHandler): pure, so it is tested alone.
 * The metric is a per-replica value (for `inflight`: requests in flight per HEALTHY replica,
 * as the proxy sees them). Above scale_up_threshold: one more replica; below
 * scale_down_threshold: one fewer; never outside [min, max]; never within the cooldown.
 */
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
}

export interface ScalingInput {
  current: number;
  min: number;
  max: number;
  /** The metric's current value per replica; null when it cannot be read (no decision then). */
  metric: number | null;
  policy: ScalingPolicy;
  /** epoch ms of the last scaling action, or null. */
  lastScaledAt: number | null;
  now: number;
}

export interface ScalingDecision {
  replicas: number;
  reason: string;
}

export const SCALING_DEFAULTS = {
  target_metric: 'inflight',
  scale_up_threshold: 2.4,
  scale_down_threshold: 0.5,
  cooldown_period: 60,
} as const;

export function decideScale(input: ScalingInput): ScalingDecision | null {
  const p = input.policy;
  if (input.metric === null) return null;
  const up = p.scale_up_threshold ?? SCALING_DEFAULTS.scale_up_threshold;
  const down = p.scale_down_threshold ?? SCALING_DEFAULTS.scale_down_threshold;
  const cooldownMs = (p.cooldown_period ?? SCALING_DEFAULTS.cooldown_period) * 1000;
  if (input.lastScaledAt !== null && input.now - input.lastScaledAt < cooldownMs) return null;
  const metric = p.target_metric ?? SCALING_DEFAULTS.target_metric;
  if (input.metric > up && input.current < input.max) {
    return {
      replicas: input.current + 1,
      reason: `${metric} ${input.metric.toFixed(2)} per replica > scale_up_threshold ${up}`,
    };
  }
  if (input.metric < down && input.current > Math.max(input.min, 1)) {
    return {
      replicas: input.current - 1,
      reason: `${metric} ${input.metric.toFixed(2)} per replica < scale_down_threshold ${down}`,
    };
  }
  return null;
}
