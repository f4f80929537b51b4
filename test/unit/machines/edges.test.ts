import { describe, expect, it } from 'vitest';
import { type AnyStateMachine, createMachine } from 'xstate';
import { deploymentMachine } from '../../../machines/deployment.ts';
import { replicaMachine } from '../../../machines/replica.ts';
import { routeMachine } from '../../../machines/route.ts';
import { edgeSet, sorted, topLevelEdges } from '../../harness/machine-edges.ts';

/** docs/state-machines.md, "Deployment", plus the delete additions. */
const DEPLOYMENT_TABLE = [
  ['PENDING', 'PROVISIONING'],
  ['PENDING', 'ERROR'],
  ['PROVISIONING', 'RUNNING'],
  ['PROVISIONING', 'PENDING'],
  ['RUNNING', 'DESTROYING'],
  ['DESTROYING', 'TERMINATED'],
  // Additions (machines/deployment.ts header): delete a stuck deployment.
  ['PENDING', 'DESTROYING'],
  ['PROVISIONING', 'DESTROYING'],
  ['ERROR', 'DESTROYING'],
  // Additions (machines/deployment.ts header, issue 12): a crash loop ends in ERROR; an update
  // retries an ERROR deployment from PENDING.
  ['PROVISIONING', 'ERROR'],
  ['ERROR', 'PENDING'],
] as const;

/** "Replica State Transitions", plus the termination request accepted while STARTING. */
const REPLICA_TABLE = [
  ['STARTING', 'HEALTHY'],
  ['STARTING', 'UNHEALTHY'],
  ['HEALTHY', 'UNHEALTHY'],
  ['UNHEALTHY', 'HEALTHY'],
  ['HEALTHY', 'TERMINATING'],
  ['UNHEALTHY', 'TERMINATING'],
  ['TERMINATING', 'TERMINATED'],
  // Addition (machines/replica.ts header): scale-down or delete while still loading.
  ['STARTING', 'TERMINATING'],
] as const;

/** "Route State Transitions"; `*` expanded over every non-terminal state. */
const ROUTE_TABLE = [
  ['PENDING', 'PROVISIONING'],
  ['PROVISIONING', 'HEALTHY'],
  ['HEALTHY', 'HEALTHY'],
  ['HEALTHY', 'UNHEALTHY'],
  ['HEALTHY', 'DEGRADED'],
  ['UNHEALTHY', 'HEALTHY'],
  ['UNHEALTHY', 'DEGRADED'],
  ['UNHEALTHY', 'TERMINATING'],
  ['DEGRADED', 'HEALTHY'],
  ['DEGRADED', 'UNHEALTHY'],
  ['DEGRADED', 'TERMINATING'],
  ['PENDING', 'TERMINATING'],
  ['PROVISIONING', 'TERMINATING'],
  ['HEALTHY', 'TERMINATING'],
  ['TERMINATING', 'TERMINATED'],
] as const;

/** Deep copy of a machine config that keeps functions (actions, guards) by reference. */
function cloneConfig<T>(v: T): T {
  if (Array.isArray(v)) return v.map(cloneConfig) as T;
  if (v && typeof v === 'object') {
    return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, cloneConfig(x)])) as T;
  }
  return v;
}

type Config = {
  states: Record<string, { on?: Record<string, unknown>; states?: unknown }>;
};

function mutate(machine: AnyStateMachine, change: (c: Config) => void): AnyStateMachine {
  const config = cloneConfig(machine.config) as unknown as Config;
  change(config);
  return createMachine(config as never, machine.implementations as never);
}

describe('machine edges equal the documented tables', () => {
  it.each([
    ['deployment', deploymentMachine, DEPLOYMENT_TABLE],
    ['replica', replicaMachine, REPLICA_TABLE],
    ['route', routeMachine, ROUTE_TABLE],
  ] as const)('the %s machine takes exactly the documented edges', (_, machine, table) => {
    expect(sorted(topLevelEdges(machine))).toEqual(sorted(edgeSet(table)));
  });

  it('removing a transition from a machine makes the edge set differ from the table', () => {
    const without = mutate(deploymentMachine, (c) => {
      delete c.states.RUNNING!.on!['deployment.delete'];
    });
    expect(sorted(topLevelEdges(without))).not.toEqual(sorted(edgeSet(DEPLOYMENT_TABLE)));
    expect(topLevelEdges(without).has('RUNNING->DESTROYING')).toBe(false);

    const replicaWithout = mutate(replicaMachine, (c) => {
      delete c.states.HEALTHY!.on!['replica.terminate'];
    });
    expect(topLevelEdges(replicaWithout).has('HEALTHY->TERMINATING')).toBe(false);
  });

  it('adding a transition to a machine makes the edge set differ from the table', () => {
    const withExtra = mutate(routeMachine, (c) => {
      c.states.PENDING!.on!['route.health.healthy'] = { target: 'HEALTHY' };
    });
    expect(topLevelEdges(withExtra).has('PENDING->HEALTHY')).toBe(true);
    expect(sorted(topLevelEdges(withExtra))).not.toEqual(sorted(edgeSet(ROUTE_TABLE)));

    const deploymentExtra = mutate(deploymentMachine, (c) => {
      c.states.DESTROYING!.on = { 'deployment.scale': { target: 'RUNNING' } };
    });
    expect(topLevelEdges(deploymentExtra).has('DESTROYING->RUNNING')).toBe(true);
  });
});
