/**
 * The runtime's side of scale to zero (src/scaling/scale-to-zero.ts): which deployments it
 * applies to, their live state, the idle signal from the proxies, and a history event for
 * every scale to zero and every activation (so `status` and the events API show them).
 */
import { deploymentActorId } from '../../machines/deployment.ts';
import { ScaleToZero, type ScaleToZeroEvent, scaleToZeroAfterS } from '../scaling/scale-to-zero.ts';
import { deploymentSnapshotOf } from './actor-refs.ts';
import type { Runtime } from './runtime.ts';
import { topState } from './snapshot-writer.ts';

export function scaleToZeroOf(rt: Runtime): ScaleToZero {
  return new ScaleToZero({
    deployments: () =>
      Array.from(rt.tracked.all(), (t) => ({
        id: t.id,
        name: t.name,
        min_replicas: t.options.min_replicas,
        policy: t.options.scaling_policy,
      })),
    stateOf: (id) => {
      const ref = rt.deploymentRef(id);
      if (!ref) return null;
      const snap = deploymentSnapshotOf(ref);
      return { state: topState(snap.value), target: snap.context.target };
    },
    lastRequests: async () => (await rt.deps.lastRequests?.()) ?? new Map(),
    scale: (id, replicas) => rt.scale(id, replicas),
    now: rt.now,
    onEvent: (e) => recordScaleToZeroEvent(rt, e),
  });
}

function recordScaleToZeroEvent(rt: Runtime, e: ScaleToZeroEvent): void {
  rt.log.info(
    { deployment: e.name, deployment_id: e.deployment_id, from: e.from, to: e.to },
    e.reason,
  );
  rt.deps.store
    .recordEvents([
      {
        actorId: deploymentActorId(e.deployment_id),
        kind: 'deployment',
        deploymentId: e.deployment_id,
        state: 'RUNNING',
        event: e.kind === 'scaled_to_zero' ? 'deployment.scaled_to_zero' : 'deployment.activated',
        reason: e.reason,
        at: new Date(e.at),
      },
    ])
    .catch((err: unknown) =>
      rt.log.warn({ err, deployment: e.deployment_id }, 'recording a scale-to-zero event failed'),
    );
}

/** The `scale_to_zero` part of a deployment's view; null when its policy does not scale to zero. */
export interface ScaleToZeroView {
  after_s: number;
  /** At zero replicas now (the next request activates it). */
  at_zero: boolean;
  /** e.g. "scaled to zero after 300 s idle"; null while it has replicas. */
  message: string | null;
}

export function scaleToZeroView(
  s: ScaleToZero,
  d: { id: string; min_replicas: number; policy: Parameters<typeof scaleToZeroAfterS>[1] },
  target: number,
): ScaleToZeroView | null {
  const after = scaleToZeroAfterS(d.min_replicas, d.policy);
  if (after === null) return null;
  if (target > 0) return { after_s: after, at_zero: false, message: null };
  const zeroed = s.zeroedReason(d.id);
  return {
    after_s: after,
    at_zero: true,
    message: zeroed
      ? `${zeroed.reason}; the next request activates it`
      : 'at zero replicas; the next request activates it',
  };
}
