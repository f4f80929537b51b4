/**
 * Rebuilds the coordinator's persisted snapshot from per-deployment rows, so the whole tree is
 * created and started once (XState has no API to restore one deployment into a running tree;
 * xstate-notes rule 9). Deployments are placed by the current shard count, so changing it
 * between restarts only moves deployments between shards.
 */

import { shardActorId, shardOf } from '../../machines/coordinator.ts';
import {
  type DeploymentState,
  DeploymentStates,
  deploymentActorId,
} from '../../machines/deployment.ts';

/** Bumped when a machine changes in a way old snapshots cannot be read by (rule 7). */
export const SNAPSHOT_SCHEMA_VERSION = 1;

export interface DeploymentSnapshotRow {
  deploymentId: string;
  snapshot: unknown;
}

interface PersistedChild {
  snapshot: unknown;
  src: string;
  systemId: string;
  syncSnapshot: false;
}

export class SnapshotRejected extends Error {}

/** A deployment snapshot must name a documented state, or restore would drop it silently (rule 7). */
export function validateDeploymentSnapshot(snapshot: unknown): asserts snapshot is {
  value: unknown;
  context: { deploymentId: string };
  children: Record<string, unknown>;
} {
  const s = snapshot as {
    value?: unknown;
    context?: { deploymentId?: unknown };
    children?: unknown;
  };
  const top =
    typeof s?.value === 'string'
      ? s.value
      : s?.value && typeof s.value === 'object'
        ? Object.keys(s.value)[0]
        : undefined;
  if (!top || !DeploymentStates.includes(top as DeploymentState)) {
    throw new SnapshotRejected(`unknown deployment state ${JSON.stringify(s?.value)}`);
  }
  if (typeof s.context?.deploymentId !== 'string') throw new SnapshotRejected('no deploymentId');
  if (!s.children || typeof s.children !== 'object') throw new SnapshotRejected('no children');
}

export function assembleCoordinatorSnapshot(
  shards: number,
  rows: readonly DeploymentSnapshotRow[],
): unknown {
  const shardChildren: Record<string, Record<string, PersistedChild>> = {};
  for (let i = 0; i < shards; i++) shardChildren[shardActorId(i)] = {};
  for (const row of rows) {
    const id = deploymentActorId(row.deploymentId);
    const shard = shardActorId(shardOf(row.deploymentId, shards));
    (shardChildren[shard] as Record<string, PersistedChild>)[id] = {
      snapshot: row.snapshot,
      src: 'deployment',
      systemId: id,
      syncSnapshot: false,
    };
  }
  const children: Record<string, PersistedChild> = {};
  for (let i = 0; i < shards; i++) {
    const id = shardActorId(i);
    children[id] = {
      snapshot: {
        status: 'active',
        value: {},
        historyValue: {},
        context: { index: i },
        children: shardChildren[id],
      },
      src: 'shard',
      systemId: id,
      syncSnapshot: false,
    };
  }
  return {
    status: 'active',
    value: {},
    historyValue: {},
    context: { shards },
    children,
  };
}
