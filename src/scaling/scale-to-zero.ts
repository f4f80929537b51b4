/**
 * Scale to zero: a deployment whose policy allows it (`min_replicas` 0 and
 * `scaling_policy.scale_to_zero_after_s`) and that has had no request for that long goes to
 * zero replicas; the proxy holds the next request and asks for an activation (one replica).
 *
 * `decideScaleToZero` is the pure rule (tested with a virtual clock); `ScaleToZero` is the
 * loop around it, with the idle signal (the proxies' last request per deployment) and the
 * scaling injected, and `activate` the idempotent way back up.
 */
import type { ScalingPolicy } from './policy.ts';

export interface ScaleToZeroInput {
  /** Effective lower bound of the deployment (its `min_replicas`). */
  min: number;
  policy: ScalingPolicy | undefined;
  /** Top-level state; only RUNNING deployments go to zero. */
  state: string;
  /** Target replica count now. */
  target: number;
  /**
   * The latest moment the deployment was last in use, epoch ms: its last request at any proxy
   * (a proxy with requests in flight reports "now"), its last activation or scale-up, or when
   * this coordinator first saw it — whichever is latest.
   */
  lastActiveAt: number;
  now: number;
}

export interface ScaleToZeroDecision {
  /** Seconds idle when the rule fired. */
  idleS: number;
  reason: string;
}

/** The idle limit of a policy when scale to zero applies to it, else null. */
export function scaleToZeroAfterS(min: number, policy: ScalingPolicy | undefined): number | null {
  const after = policy?.scale_to_zero_after_s;
  if (after === undefined || !(after > 0) || min !== 0) return null;
  return after;
}

/** The status line of a deployment that went to zero (`status`, the history event). */
export function scaledToZeroReason(afterS: number): string {
  return `scaled to zero after ${formatSeconds(afterS)} s idle`;
}

function formatSeconds(s: number): string {
  return Number.isInteger(s) ? String(s) : s.toFixed(1);
}

export function decideScaleToZero(input: ScaleToZeroInput): ScaleToZeroDecision | null {
  const after = scaleToZeroAfterS(input.min, input.policy);
  if (after === null) return null;
  if (input.state !== 'RUNNING' || input.target === 0) return null;
  const idleMs = input.now - input.lastActiveAt;
  if (idleMs < after * 1000) return null;
  return { idleS: idleMs / 1000, reason: scaledToZeroReason(after) };
}

/** Whether an activation request should scale the deployment to one replica. */
export function shouldActivate(input: {
  min: number;
  policy: ScalingPolicy | undefined;
  state: string;
  target: number;
}): boolean {
  return (
    scaleToZeroAfterS(input.min, input.policy) !== null &&
    input.state === 'RUNNING' &&
    input.target === 0
  );
}

export interface ZeroableDeployment {
  id: string;
  name: string;
  min_replicas: number;
  policy: ScalingPolicy | undefined;
}

export interface ScaleToZeroEvent {
  deployment_id: string;
  name: string;
  kind: 'scaled_to_zero' | 'activated';
  from: number;
  to: number;
  reason: string;
  at: number;
}

export interface ScaleToZeroDeps {
  deployments(): Iterable<ZeroableDeployment>;
  stateOf(deploymentId: string): { state: string; target: number } | null;
  /** Last request per deployment id over every proxy (epoch ms); absent: none seen. */
  lastRequests(): Promise<ReadonlyMap<string, number>>;
  /**
   * Sets the target. Activation holds requests meanwhile: the live deployment should be told
   * at once, before the durable part (the runtime's scale does so for a deployment it runs).
   */
  scale(deploymentId: string, replicas: number): Promise<unknown>;
  now: () => number;
  /** Each scale to zero and each activation (history events, logs). */
  onEvent?: (e: ScaleToZeroEvent) => void;
}

export class ScaleToZero {
  /** When this coordinator first saw each deployment, or last scaled it up (epoch ms). */
  private readonly activeSince = new Map<string, number>();
  /** Deployments at zero because of this rule: the reason, for `status`. */
  private readonly zeroed = new Map<string, { reason: string; at: number }>();
  /** Activations under way, by deployment id: concurrent requests share one. */
  private readonly activating = new Map<string, Promise<boolean>>();

  constructor(private readonly deps: ScaleToZeroDeps) {}

  /** One pass: every deployment idle past its limit goes to zero. Returns those scaled. */
  async evaluate(): Promise<ScaleToZeroEvent[]> {
    const candidates: Array<{ d: ZeroableDeployment; target: number; state: string }> = [];
    const now = this.deps.now();
    for (const d of [...this.deps.deployments()]) {
      const live = this.deps.stateOf(d.id);
      if (!live) continue;
      if (!this.activeSince.has(d.id)) this.activeSince.set(d.id, now);
      if (live.target > 0) this.zeroed.delete(d.id);
      if (scaleToZeroAfterS(d.min_replicas, d.policy) === null) continue;
      if (live.state === 'RUNNING' && live.target > 0) candidates.push({ d, ...live });
    }
    if (candidates.length === 0) return [];
    const last = await this.deps.lastRequests();
    const done: ScaleToZeroEvent[] = [];
    for (const { d } of candidates) {
      if (this.activating.has(d.id)) continue;
      // Re-read: an activation or a scale may have happened while the reports were read.
      const live = this.deps.stateOf(d.id);
      if (!live) continue;
      const at = this.deps.now();
      const decision = decideScaleToZero({
        min: d.min_replicas,
        policy: d.policy,
        state: live.state,
        target: live.target,
        lastActiveAt: Math.max(last.get(d.id) ?? 0, this.activeSince.get(d.id) ?? at),
        now: at,
      });
      if (!decision) continue;
      // Said before the scale resolves: the target reads 0 as soon as the scale is accepted.
      this.zeroed.set(d.id, { reason: decision.reason, at });
      try {
        await this.deps.scale(d.id, 0);
      } catch (err) {
        this.zeroed.delete(d.id);
        throw err;
      }
      const e: ScaleToZeroEvent = {
        deployment_id: d.id,
        name: d.name,
        kind: 'scaled_to_zero',
        from: live.target,
        to: 0,
        reason: decision.reason,
        at,
      };
      done.push(e);
      this.deps.onEvent?.(e);
    }
    return done;
  }

  /**
   * A proxy holds a request for the deployment: scale it to one replica if it is at zero by
   * its policy. Idempotent: concurrent calls share one scale, later ones find it done.
   * Resolves true when this call (or the one it joined) scaled the deployment.
   */
  activate(deploymentId: string): Promise<boolean> {
    const running = this.activating.get(deploymentId);
    if (running) return running;
    const d = [...this.deps.deployments()].find((x) => x.id === deploymentId);
    const live = d ? this.deps.stateOf(deploymentId) : null;
    if (!d || !live || !shouldActivate({ min: d.min_replicas, policy: d.policy, ...live })) {
      return Promise.resolve(false);
    }
    const p = (async () => {
      try {
        await this.deps.scale(deploymentId, 1);
        const at = this.deps.now();
        this.activeSince.set(deploymentId, at);
        this.zeroed.delete(deploymentId);
        this.deps.onEvent?.({
          deployment_id: deploymentId,
          name: d.name,
          kind: 'activated',
          from: 0,
          to: 1,
          reason: 'activated by a request held at the proxy',
          at,
        });
        return true;
      } finally {
        this.activating.delete(deploymentId);
      }
    })();
    this.activating.set(deploymentId, p);
    return p;
  }

  /** A scale that did not come from this rule (manual or autoscaler): restart the idle clock. */
  scaled(deploymentId: string, replicas: number): void {
    if (replicas > 0) {
      this.activeSince.set(deploymentId, this.deps.now());
      this.zeroed.delete(deploymentId);
    }
  }

  /** Why the deployment is at zero, when this rule put it there. */
  zeroedReason(deploymentId: string): { reason: string; at: number } | undefined {
    return this.zeroed.get(deploymentId);
  }

  forget(deploymentId: string): void {
    this.activeSince.delete(deploymentId);
    this.zeroed.delete(deploymentId);
  }
}
