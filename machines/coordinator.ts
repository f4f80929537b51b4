/**
 * Coordinator -> shards -> deployments.
 *
 * Shards keep every parent's child list short: XState copies a parent's children on each
 * spawn and stop, which turns quadratic past a few hundred children (docs/xstate-rules.md rule 2).
 * The shard count is fixed when the coordinator is created and persisted with it, so a
 * deployment always restores under the same shard. Events for one deployment, replica or
 * route are sent straight to it (`system.get`), never routed through here.
 */
import { enqueueActions, setup } from 'xstate';
import { type DeploymentInput, deploymentActorId, deploymentMachine } from './deployment.ts';

export interface CoordinatorInput {
  shards: number;
}

export type CoordinatorEvent =
  | { type: 'coordinator.deployment.add'; input: DeploymentInput }
  | { type: 'coordinator.deployment.remove'; deploymentId: string };

export type ShardEvent =
  | { type: 'shard.deployment.add'; input: DeploymentInput }
  | { type: 'shard.deployment.remove'; deploymentId: string };

export const shardActorId = (index: number) => `shard:${index}`;

/** FNV-1a: a stable, dependency-free hash for placing a deployment on a shard. */
export function shardOf(deploymentId: string, shards: number): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < deploymentId.length; i++) {
    h ^= deploymentId.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return (h >>> 0) % shards;
}

/** ≈√N shards for N expected deployments, at least 1. */
export function shardCountFor(expectedDeployments: number): number {
  return Math.max(1, Math.ceil(Math.sqrt(Math.max(1, expectedDeployments))));
}

export const shardMachine = setup({
  types: {
    context: {} as { index: number },
    events: {} as ShardEvent,
    input: {} as { index: number },
  },
  actors: { deployment: deploymentMachine },
  actions: {
    /** Report a child that failed (runtime-provided); the shard and its siblings go on. */
    reportChildError: () => {},
  },
}).createMachine({
  id: 'shard',
  context: ({ input }) => ({ index: input.index }),
  on: {
    'shard.deployment.add': {
      actions: enqueueActions(({ event, enqueue, self }) => {
        const id = deploymentActorId(event.input.deploymentId);
        // Never spawn an existing systemId (statelyai/xstate#4453): adding twice is a no-op.
        if (self.getSnapshot().children[id]) return;
        enqueue.spawnChild('deployment', { id, systemId: id, input: event.input });
      }),
    },
    'shard.deployment.remove': {
      actions: enqueueActions(({ event, enqueue, self }) => {
        const id = deploymentActorId(event.deploymentId);
        if (self.getSnapshot().children[id]) enqueue.stopChild(id);
      }),
    },
    'xstate.error.actor.*': { actions: 'reportChildError' },
  },
});

export const coordinatorMachine = setup({
  types: {
    context: {} as { shards: number },
    events: {} as CoordinatorEvent,
    input: {} as CoordinatorInput,
  },
  actors: { shard: shardMachine },
  actions: {
    reportChildError: () => {},
  },
}).createMachine({
  id: 'coordinator',
  context: ({ input }) => ({ shards: Math.max(1, Math.floor(input.shards)) }),
  // Entry runs only on a fresh start; a restored coordinator brings its shards with it.
  entry: enqueueActions(({ context, enqueue }) => {
    for (let i = 0; i < context.shards; i++) {
      const id = shardActorId(i);
      enqueue.spawnChild('shard', { id, systemId: id, input: { index: i } });
    }
  }),
  on: {
    'coordinator.deployment.add': {
      actions: enqueueActions(({ context, event, enqueue }) => {
        enqueue.sendTo(shardActorId(shardOf(event.input.deploymentId, context.shards)), {
          type: 'shard.deployment.add',
          input: event.input,
        });
      }),
    },
    'coordinator.deployment.remove': {
      actions: enqueueActions(({ context, event, enqueue }) => {
        enqueue.sendTo(shardActorId(shardOf(event.deploymentId, context.shards)), {
          type: 'shard.deployment.remove',
          deploymentId: event.deploymentId,
        });
      }),
    },
    'xstate.error.actor.*': { actions: 'reportChildError' },
  },
});
