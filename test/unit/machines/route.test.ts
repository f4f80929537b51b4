import { describe, expect, it } from 'vitest';
import { createActor, fromPromise, SimulatedClock } from 'xstate';
import { routeMachineWithClock } from '../../../machines/route.ts';
import { pureActor } from './pure-actor.ts';

const routeInput = { routeId: 't1', replicaId: 'r1', deploymentId: 'd1' };

function testMachine(drain: () => Promise<void> = async () => {}) {
  // A clock that never moves: these tests do not wait on the drain timeout.
  return routeMachineWithClock(new SimulatedClock()).provide({
    actions: { notifyParent: () => {} },
    actors: { drainRoute: fromPromise(drain) },
  });
}

function testRoute(drain: () => Promise<void> = async () => {}) {
  return createActor(testMachine(drain), { input: routeInput }).start();
}

/** Single steps through XState's pure transition(): no actor, no effect, no timer. */
const pureRoute = () => pureActor(testMachine(), routeInput);

const healthy = { type: 'route.health.healthy', reason: 'ready', at: 1 } as const;
const unhealthy = {
  type: 'route.health.unhealthy',
  reason: 'HTTP 500 from /health',
  at: 2,
} as const;
const degraded = { type: 'route.health.degraded', reason: 'no health data', at: 3 } as const;

describe('route machine', () => {
  it('a route fed HEALTHY while HEALTHY stays HEALTHY and records the check', () => {
    const a = pureRoute();
    a.send({ type: 'route.provision' });
    a.send(healthy);
    a.send({ ...healthy, at: 10 });
    expect(a.getSnapshot().value).toBe('HEALTHY');
    expect(a.getSnapshot().context.lastHealth).toEqual({
      class: 'HEALTHY',
      reason: 'ready',
      at: 10,
    });
  });

  it('PROVISIONING waits for a passing check and ignores other classes', () => {
    const a = pureRoute();
    a.send({ type: 'route.provision' });
    a.send(unhealthy);
    a.send(degraded);
    expect(a.getSnapshot().value).toBe('PROVISIONING');
    a.send(healthy);
    expect(a.getSnapshot().value).toBe('HEALTHY');
  });

  it('moves between HEALTHY, UNHEALTHY and DEGRADED on classifications', () => {
    const a = pureRoute();
    a.send({ type: 'route.provision' });
    const seen: string[] = [];
    for (const e of [healthy, unhealthy, degraded, healthy, degraded, unhealthy, healthy]) {
      a.send(e);
      seen.push(String(a.getSnapshot().value));
    }
    expect(seen).toEqual([
      'HEALTHY',
      'UNHEALTHY',
      'DEGRADED',
      'HEALTHY',
      'DEGRADED',
      'UNHEALTHY',
      'HEALTHY',
    ]);
  });

  it('is evicted only when its status is in the cleanup target statuses', async () => {
    const a = testRoute();
    a.send({ type: 'route.provision' });
    a.send(healthy);
    a.send(degraded);
    a.send({ type: 'route.evict', statuses: ['unhealthy'] });
    expect(a.getSnapshot().value).toBe('DEGRADED');
    a.send({ type: 'route.evict', statuses: ['unhealthy', 'degraded'] });
    await new Promise((r) => setImmediate(r));
    expect(a.getSnapshot().value).toBe('TERMINATED');
  });

  it('drains before TERMINATED and takes no health update while TERMINATING', async () => {
    let release!: () => void;
    const a = testRoute(() => new Promise<void>((r) => (release = r)));
    a.send({ type: 'route.provision' });
    a.send(healthy);
    a.send({ type: 'route.terminate', cause: 'manual deletion' });
    expect(a.getSnapshot().value).toBe('TERMINATING');
    a.send(healthy);
    expect(a.getSnapshot().value).toBe('TERMINATING');
    release();
    await new Promise((r) => setImmediate(r));
    expect(a.getSnapshot().value).toBe('TERMINATED');
    expect(a.getSnapshot().context.reason).toBe('manual deletion');
  });

  it('entering TERMINATING sets the drain deadline from the clock and starts the drain', () => {
    const clock = new SimulatedClock();
    clock.set(2_000);
    const machine = routeMachineWithClock(clock).provide({ actions: { notifyParent: () => {} } });
    const a = pureActor(machine, { ...routeInput, drain_timeout_s: 5 });
    a.send({ type: 'route.terminate', cause: 'scale-down' });
    expect(a.getSnapshot().value).toBe('TERMINATING');
    expect(a.getSnapshot().context.deadline).toBe(7_000);
    const spawned = a
      .lastActions()
      .filter(([type]) => type === 'xstate.spawnChild')
      .map(([, p]) => (p as { id: string }).id);
    expect(spawned.sort()).toEqual(['drain', 'drain-deadline']);
  });

  it('terminates from PENDING on deployment termination', async () => {
    const a = testRoute();
    a.send({ type: 'route.terminate', cause: 'deployment deleted' });
    await new Promise((r) => setImmediate(r));
    expect(a.getSnapshot().value).toBe('TERMINATED');
  });
});
