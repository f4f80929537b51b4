/**
 * The runtime's scaling: the autoscaler (src/scaling/autoscaler.ts) and scale to zero
 * (src/scaling/scale-to-zero.ts) under one roof — their ticks, one autoscaling pass at a time,
 * what a manual scale tells them, and what they add to a deployment's view.
 */
import type { Autoscaler, AutoscalingStatus, ScalingEvent } from '../scaling/autoscaler.ts';
import type { ScaleToZero } from '../scaling/scale-to-zero.ts';
import type { RuntimeConfig } from './config.ts';
import type { DeploymentOptions } from './deployment-options.ts';
import type { DeploymentView } from './deployment-view.ts';
import { scaleToZeroView } from './scale-to-zero-wiring.ts';

export class RuntimeScaling {
  private pass: Promise<unknown> | null = null;

  constructor(
    private readonly autoscaler: Autoscaler,
    readonly toZero: ScaleToZero,
  ) {}

  /** Starts the ticks; scale to zero only when the proxies' idle signal is known. */
  start(
    every: (s: number, fn: () => Promise<unknown>) => void,
    config: RuntimeConfig,
    idleSignal: boolean,
  ): void {
    every(config.scalingIntervalS, () => this.evaluate());
    if (idleSignal) every(config.scaleToZeroIntervalS, () => this.toZero.evaluate());
  }

  /** One autoscaling pass; a slow pass (Redis, a scale) never overlaps the next tick. */
  async evaluate(): Promise<void> {
    this.pass ??= this.autoscaler.evaluate().finally(() => {
      this.pass = null;
    });
    await this.pass;
  }

  statusOf(deploymentId: string): AutoscalingStatus | null {
    return this.autoscaler.statusOf(deploymentId);
  }

  onScaling(listener: (e: ScalingEvent) => void): () => void {
    return this.autoscaler.onScaling(listener);
  }

  /** The deployment is gone. */
  forget(deploymentId: string): void {
    this.autoscaler.forget(deploymentId);
    this.toZero.forget(deploymentId);
  }

  /** The view with `scale_to_zero` and `autoscaling`; a paused autoscaler joins `reason`. */
  decorate(view: DeploymentView, options: DeploymentOptions): DeploymentView {
    const zero = scaleToZeroView(
      this.toZero,
      { id: view.id, min_replicas: options.min_replicas, policy: options.scaling_policy },
      view.target_replicas,
    );
    const withZero = zero ? { ...view, scale_to_zero: zero } : view;
    const autoscaling = this.autoscaler.statusOf(view.id);
    if (!autoscaling) return withZero;
    // A paused autoscaler is something wrong with a RUNNING deployment: say it where
    // `status` says what is wrong.
    const paused = this.autoscaler.pausedReason(view.id);
    const reason = paused ? [paused, view.reason].filter(Boolean).join('; ') : view.reason;
    return { ...withZero, reason, autoscaling };
  }
}
