/**
 * The eviction sweep (every EVICTION_INTERVAL_SEC): each deployment is told its scaling group's
 * current `route_cleanup_target_statuses`, read afresh each sweep so a changed group applies
 * without a restart; the route machines decide which of their routes terminate.
 */
import type { CleanupStatus } from '../../machines/route.ts';
import type { Store } from '../store/store.ts';
import type { TrackedDeployment } from './tracked-deployments.ts';

export async function evictionSweep(
  deployments: Iterable<TrackedDeployment>,
  store: Pick<Store, 'getScalingGroup'>,
  send: (
    deploymentId: string,
    event: { type: 'deployment.evict'; statuses: CleanupStatus[] },
  ) => void,
): Promise<void> {
  const groups = new Map<string, CleanupStatus[]>();
  for (const d of [...deployments]) {
    const group = d.options.scaling_group;
    let statuses = groups.get(group);
    if (!statuses) {
      const g = await store.getScalingGroup(group);
      statuses = g.route_cleanup_target_statuses as CleanupStatus[];
      groups.set(group, statuses);
    }
    send(d.id, { type: 'deployment.evict', statuses });
  }
}
