import { describe, expect, it } from 'vitest';
import {
  DeploymentStates,
  deploymentMachine,
  LIVE_DEPLOYMENT_STATES,
} from '../../../machines/deployment.ts';
import { LIVE_REPLICA_STATES, ReplicaStates, replicaMachine } from '../../../machines/replica.ts';
import {
  LIVE_ROUTE_STATES,
  RouteStates as machineRouteStates,
  routeMachine,
} from '../../../machines/route.ts';
import { topLevelStates } from '../../../machines/states.ts';
import { RouteStates as domainRouteStates } from '../../../src/domain/routing.ts';

describe('state names', () => {
  // machines/ may not import src/; the routing table re-exports the machines' one definition.
  it('the routing table uses exactly the route machine state names', () => {
    expect([...domainRouteStates]).toEqual([...machineRouteStates]);
  });

  it('each exported state list names exactly the top-level states of its machine', () => {
    expect([...DeploymentStates].sort()).toEqual(topLevelStates(deploymentMachine).sort());
    expect([...ReplicaStates].sort()).toEqual(topLevelStates(replicaMachine).sort());
    expect([...machineRouteStates].sort()).toEqual(topLevelStates(routeMachine).sort());
  });

  it('the live state lists are every state but the final one, derived from the machines', () => {
    expect(LIVE_DEPLOYMENT_STATES).toEqual([
      'PENDING',
      'PROVISIONING',
      'RUNNING',
      'DESTROYING',
      'ERROR',
    ]);
    expect(LIVE_REPLICA_STATES).toEqual(['STARTING', 'HEALTHY', 'UNHEALTHY', 'TERMINATING']);
    expect(LIVE_ROUTE_STATES).toEqual([
      'PENDING',
      'PROVISIONING',
      'HEALTHY',
      'UNHEALTHY',
      'DEGRADED',
      'TERMINATING',
    ]);
  });
});
