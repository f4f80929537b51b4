/**
 * The autoscaling loop: on each pass, every RUNNING deployment with a scaling policy gets the
 * policy's decision (scaling/policy.ts) on its metric per HEALTHY replica, and is scaled when
 * the decision says so. Keeps the cooldown (last action per deployment) in memory: a restart
 * resets it.
 */
import { decideScale, type ScalingPolicy } from './policy.ts';

/** A deployment as the autoscaler sees it. */
export interface ScalableDeployment {
  id: string;
  name: string;
  min_replicas: number;
  max_replicas: number;
  policy: ScalingPolicy | undefined;
}

/** The live state of a deployment, or null when it does not run here. */
export interface ScalableState {
  /** Top-level state (only RUNNING deployments are scaled). */
  state: string;
  /** Target replica count. */
  target: number;
  /** HEALTHY replicas that are not leaving. */
  healthy: number;
}

export interface ScalingEvent {
  deployment_id: string;
  name: string;
  from: number;
  to: number;
  reason: string;
  at: string;
}

export interface AutoscalerDeps {
  deployments(): Iterable<ScalableDeployment>;
  stateOf(deploymentId: string): ScalableState | null;
  /** The metric summed over the deployment's replicas; null when unknown. */
  metric(deployment: { id: string; name: string }, metric: string): number | null;
  scale(deploymentId: string, replicas: number): Promise<unknown>;
  now: () => number;
  log?: { info(obj: object, msg?: string): void; warn(obj: object, msg?: string): void };
}

export class Autoscaler {
  /** Last autoscaling action per deployment (cooldown). */
  private readonly lastScaledAt = new Map<string, number>();
  private readonly listeners = new Set<(e: ScalingEvent) => void>();

  constructor(private readonly deps: AutoscalerDeps) {}

  onScaling(listener: (e: ScalingEvent) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** One pass over every deployment that has a scaling policy; returns what it did. */
  async evaluate(): Promise<ScalingEvent[]> {
    const done: ScalingEvent[] = [];
    for (const d of [...this.deps.deployments()]) {
      if (!d.policy) continue;
      const live = this.deps.stateOf(d.id);
      if (live?.state !== 'RUNNING') continue;
      const total = this.deps.metric(
        { id: d.id, name: d.name },
        d.policy.target_metric ?? 'inflight',
      );
      const decision = decideScale({
        current: live.target,
        min: d.min_replicas,
        max: d.max_replicas,
        metric: total === null ? null : total / Math.max(1, live.healthy),
        policy: d.policy,
        lastScaledAt: this.lastScaledAt.get(d.id) ?? null,
        now: this.deps.now(),
      });
      if (!decision) continue;
      const from = live.target;
      await this.deps.scale(d.id, decision.replicas);
      const at = this.deps.now();
      this.lastScaledAt.set(d.id, at);
      const e: ScalingEvent = {
        deployment_id: d.id,
        name: d.name,
        from,
        to: decision.replicas,
        reason: decision.reason,
        at: new Date(at).toISOString(),
      };
      this.deps.log?.info({ ...e }, 'autoscaled');
      done.push(e);
      for (const l of this.listeners) {
        try {
          l(e);
        } catch (err) {
          this.deps.log?.warn({ err }, 'scaling listener threw');
        }
      }
    }
    return done;
  }

  /** The deployment is gone: drop its cooldown. */
  forget(deploymentId: string): void {
    this.lastScaledAt.delete(deploymentId);
  }
}
