/**
 * Coordinator -> shards -> deployments.
 *
 * Shards keep every parent's child list short: XState copies a parent's children on each
 * spawn and stop, which turns quadratic past a few hundred children (docs/xstate-rules.md rule 2).
 * Which shard holds a deployment is decided outside the machine (the runtime's
 * src/runtime/shard-placement.ts keeps every shard at 32 deployments or fewer) and comes with
 * each add and remove; a shard that does not exist yet is spawned on its first add. Events for
 * one deployment, replica or route are sent straight to it (`system.get`), never routed through
 * here.
 */
import { enqueueActions, setup } from 'xstate';
import { type DeploymentInput, deploymentActorId, deploymentMachine } from './deployment.ts';

export interface CoordinatorInput {
  /** Shards spawned at the start (more are spawned as adds name them). */
  shards: number;
}

export type CoordinatorEvent =
  | { type: 'coordinator.deployment.add'; input: DeploymentInput; shard: number }
  | { type: 'coordinator.deployment.remove'; deploymentId: string; shard: number };

export type ShardEvent =
  | { type: 'shard.deployment.add'; input: DeploymentInput }
  | { type: 'shard.deployment.remove'; deploymentId: string };

export const shardActorId = (index: number) => `shard:${index}`;

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
      actions: enqueueActions(({ event, enqueue, self }) => {
        const shard = shardActorId(event.shard);
        // A shard is spawned once, on the first add that names it (never the same systemId
        // twice: statelyai/xstate#4453).
        if (!self.getSnapshot().children[shard]) {
          enqueue.spawnChild('shard', {
            id: shard,
            systemId: shard,
            input: { index: event.shard },
          });
          enqueue.assign(({ context }) => ({ shards: Math.max(context.shards, event.shard + 1) }));
        }
        enqueue.sendTo(shard, { type: 'shard.deployment.add', input: event.input });
      }),
    },
    'coordinator.deployment.remove': {
      actions: enqueueActions(({ event, enqueue, self }) => {
        const shard = shardActorId(event.shard);
        if (!self.getSnapshot().children[shard]) return;
        enqueue.sendTo(shard, {
          type: 'shard.deployment.remove',
          deploymentId: event.deploymentId,
        });
      }),
    },
    'xstate.error.actor.*': { actions: 'reportChildError' },
  },
});
