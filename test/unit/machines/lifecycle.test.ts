/**
 * Issue 12 ("Lifecycle an operator can trust"), at the machine level: capacity waits are not
 * failures, crash loops end in ERROR, an ERROR deployment is retried by an update, an update in
 * PENDING is applied, a target of 0 replicas is RUNNING.
 */
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { type AnyActorRef, createActor, fromPromise } from 'xstate';
import {
  type DeploymentInput,
  deploymentMachineWithClock,
  replicaActorId,
} from '../../../machines/deployment.ts';
import {
  type ReplicaInput,
  replicaMachineWithClock,
  type SessionInput,
  type SessionStarted,
  type StopInput,
} from '../../../machines/replica.ts';
import { routeMachineWithClock } from '../../../machines/route.ts';
import { systemClock } from '../../../src/runtime/provide-effects.ts';

// The runtime's clock; under vi.useFakeTimers() its time and timers are the fake ones.
const deploymentMachine = deploymentMachineWithClock(systemClock);
const replicaMachine = replicaMachineWithClock(systemClock);
const routeMachine = routeMachineWithClock(systemClock);

const flush = () => vi.advanceTimersByTimeAsync(1);
const top = (v: unknown) => (typeof v === 'string' ? v : Object.keys(v as object)[0]!);

function capacityError(): Error {
  return Object.assign(new Error('cpu requested 1, free 0 of 2'), {
    code: 'insufficient_resources',
  });
}

describe('replica: a capacity refusal is a wait, not a failure', () => {
  beforeEach(() => vi.useFakeTimers());
  afterEach(() => vi.useRealTimers());

  const input: ReplicaInput = {
    replicaId: 'r1',
    deploymentId: 'd1',
    revisionId: 'v1',
    health: { healthy_threshold: 1, unhealthy_threshold: 3, startup_timeout_s: 300 },
  };

  it('stays STARTING with a "waiting for capacity" reason and launches again on replica.capacity.freed, counting no restart', async () => {
    let fits = false;
    let starts = 0;
    const notified: Array<{ state: string; reason: string | null }> = [];
    const machine = replicaMachine.provide({
      actions: {
        notifyParent: ({ context }, params: { state: string }) => {
          notified.push({ state: params.state, reason: context.reason });
        },
      },
      actors: {
        startSession: fromPromise<SessionStarted, SessionInput>(async () => {
          starts++;
          if (!fits) throw capacityError();
          return { endpoint: 'http://127.0.0.1:9' };
        }),
      },
    });
    const a = createActor(machine, { input }).start();
    await flush();
    expect(a.getSnapshot().value).toEqual({ STARTING: 'capacity' });
    expect(a.getSnapshot().context.reason).toBe(
      'waiting for capacity: cpu requested 1, free 0 of 2',
    );
    expect(notified.at(-1)?.reason).toMatch(/^waiting for capacity/);
    // Long past the startup timeout: still waiting, never UNHEALTHY.
    await vi.advanceTimersByTimeAsync(400_000);
    expect(top(a.getSnapshot().value)).toBe('STARTING');
    fits = true;
    const before = starts;
    a.send({ type: 'replica.capacity.freed' });
    await flush();
    expect(starts).toBe(before + 1);
    expect(a.getSnapshot().value).toEqual({ STARTING: 'launching' });
    expect(a.getSnapshot().context.endpoint).toBe('http://127.0.0.1:9');
    expect(a.getSnapshot().context.reason).toBeNull();
    a.send({ type: 'replica.health.passed' });
    expect(top(a.getSnapshot().value)).toBe('HEALTHY');
    expect(a.getSnapshot().context.restarts).toBe(0);
    a.stop();
  });

  it('keeps waiting for capacity after a JSON round trip and re-checks on its own', async () => {
    let fits = false;
    const machine = replicaMachine.provide({
      actions: { notifyParent: () => {} },
      actors: {
        startSession: fromPromise<SessionStarted, SessionInput>(async () => {
          if (!fits) throw capacityError();
          return { endpoint: 'http://127.0.0.1:9' };
        }),
      },
    });
    const a = createActor(machine, { input }).start();
    await flush();
    const persisted = JSON.parse(JSON.stringify(a.getPersistedSnapshot()));
    a.stop();
    fits = true;
    const b = createActor(machine, { snapshot: persisted, input }).start();
    expect(b.getSnapshot().value).toEqual({ STARTING: 'capacity' });
    await vi.advanceTimersByTimeAsync(31_000);
    expect(b.getSnapshot().value).toEqual({ STARTING: 'launching' });
    b.stop();
  });

  it('takes a resumed session endpoint in HEALTHY without a transition or a restart', async () => {
    const machine = replicaMachine.provide({
      actions: { notifyParent: () => {} },
      actors: {
        startSession: fromPromise<SessionStarted, SessionInput>(async () => ({
          endpoint: 'http://127.0.0.1:9',
        })),
      },
    });
    const a = createActor(machine, { input }).start();
    await flush();
    a.send({ type: 'replica.health.passed' });
    a.send({ type: 'replica.session.resumed', endpoint: 'http://127.0.0.1:10' });
    expect(top(a.getSnapshot().value)).toBe('HEALTHY');
    expect(a.getSnapshot().context.endpoint).toBe('http://127.0.0.1:10');
    expect(a.getSnapshot().context.restarts).toBe(0);
    a.stop();
  });
});

const depInput: DeploymentInput = {
  deploymentId: 'd1',
  name: 'boom',
  revisionId: 'v1',
  replicas: 1,
  min_replicas: 0,
  max_replicas: 5,
  settings: { health: { healthy_threshold: 1, unhealthy_threshold: 2, startup_timeout_s: 60 } },
};

/** A deployment whose sessions exit right after they start (`sh -c 'echo boom; exit 3'`). */
function crashingDeployment(input: DeploymentInput = depInput) {
  const started: string[] = [];
  const stopped: string[] = [];
  let actor: AnyActorRef | null = null;
  let crash = true;
  const exitSoon = (replicaId: string) => {
    setTimeout(() => {
      actor?.system.get(replicaActorId(replicaId))?.send({
        type: 'replica.session.exited',
        detail: 'exit code 3; output: boom',
      });
    }, 10);
  };
  const machine = deploymentMachine.provide({
    actors: {
      prepareSession: fromPromise(async () => {}),
      replica: replicaMachine.provide({
        actors: {
          startSession: fromPromise<SessionStarted, SessionInput>(async ({ input: i }) => {
            started.push(i.replicaId);
            if (crash) exitSoon(i.replicaId);
            return { endpoint: `http://127.0.0.1/${i.replicaId}` };
          }),
          restartSession: fromPromise<SessionStarted, SessionInput>(async ({ input: i }) => {
            started.push(i.replicaId);
            if (crash) exitSoon(i.replicaId);
            return { endpoint: `http://127.0.0.1/${i.replicaId}` };
          }),
          stopSession: fromPromise<void, StopInput>(async ({ input: i }) => {
            stopped.push(i.replicaId);
          }),
        },
      }),
      route: routeMachine.provide({ actors: { drainRoute: fromPromise(async () => {}) } }),
    },
  });
  const created = createActor(machine, { input });
  actor = created;
  return {
    actor: created,
    machine,
    started,
    stopped,
    heal: () => {
      crash = false;
    },
  };
}

describe('deployment: crash loops end, ERROR is retried by an update', () => {
  beforeEach(() => vi.useFakeTimers());
  afterEach(() => vi.useRealTimers());

  it('goes PROVISIONING -> ERROR after max_failed_starts crashed replicas, quoting the last exit and output, and stops starting replicas', async () => {
    const { actor, started } = crashingDeployment();
    actor.start();
    await vi.advanceTimersByTimeAsync(60_000);
    expect(top(actor.getSnapshot().value)).toBe('ERROR');
    const reason = actor.getSnapshot().context.reason as string;
    expect(reason).toMatch(/^crash loop: 3 failed start\(s\) in a row \(max_failed_starts 3\)/);
    expect(reason).toContain('exit code 3; output: boom');
    const n = started.length;
    await vi.advanceTimersByTimeAsync(120_000);
    expect(started.length).toBe(n);
    expect(Object.keys(actor.getSnapshot().context.replicas)).toEqual([]);
  });

  it('honours a max_failed_starts setting', async () => {
    const { actor } = crashingDeployment({
      ...depInput,
      settings: { ...depInput.settings, max_failed_starts: 1 },
    });
    actor.start();
    await vi.advanceTimersByTimeAsync(10_000);
    expect(top(actor.getSnapshot().value)).toBe('ERROR');
    expect(actor.getSnapshot().context.reason).toMatch(/^crash loop: 1 failed start/);
  });

  it('goes ERROR -> PENDING -> PROVISIONING on an update and reaches RUNNING with the new revision', async () => {
    const { actor, heal } = crashingDeployment();
    actor.start();
    await vi.advanceTimersByTimeAsync(60_000);
    expect(top(actor.getSnapshot().value)).toBe('ERROR');
    heal();
    actor.send({ type: 'deployment.update', revisionId: 'v2' });
    await flush();
    expect(top(actor.getSnapshot().value)).toBe('PROVISIONING');
    expect(actor.getSnapshot().context.reason).toBeNull();
    const [id, r] = Object.entries(actor.getSnapshot().context.replicas)[0]!;
    expect(r.revisionId).toBe('v2');
    actor.system.get(replicaActorId(id))?.send({ type: 'replica.health.passed' });
    expect(top(actor.getSnapshot().value)).toBe('RUNNING');
  });
});

describe('deployment: no stuck states', () => {
  beforeEach(() => vi.useFakeTimers());
  afterEach(() => vi.useRealTimers());

  it('reaches RUNNING with nothing to serve when the target is 0 replicas', async () => {
    const { actor, started } = crashingDeployment({ ...depInput, replicas: 0 });
    actor.start();
    await flush();
    expect(top(actor.getSnapshot().value)).toBe('RUNNING');
    expect(started).toEqual([]);
  });

  it('applies an update received in PENDING (the replicas run the new revision)', async () => {
    let release: () => void = () => {};
    const { machine: base, heal } = crashingDeployment();
    heal();
    const machine = base.provide({
      actors: {
        prepareSession: fromPromise(
          () =>
            new Promise<void>((resolve) => {
              release = resolve;
            }),
        ),
      },
    });
    const a = createActor(machine, { input: depInput }).start();
    await flush();
    expect(top(a.getSnapshot().value)).toBe('PENDING');
    a.send({ type: 'deployment.update', revisionId: 'v2' });
    expect(a.getSnapshot().context.revisionId).toBe('v2');
    release();
    await flush();
    expect(top(a.getSnapshot().value)).toBe('PROVISIONING');
    expect(Object.values(a.getSnapshot().context.replicas).map((r) => r.revisionId)).toEqual([
      'v2',
    ]);
    a.stop();
  });

  it('changes min/max replicas on deployment.configure, and scale follows the new bounds', async () => {
    const { actor } = crashingDeployment({ ...depInput, replicas: 0 });
    actor.start();
    await flush();
    actor.send({ type: 'deployment.configure', min_replicas: 0, max_replicas: 20 });
    expect(actor.getSnapshot().context.maxReplicas).toBe(20);
    actor.send({ type: 'deployment.scale', replicas: 12 });
    expect(actor.getSnapshot().context.target).toBe(12);
  });
});

describe('deployment: a capacity wait is not a failed provisioning', () => {
  beforeEach(() => vi.useFakeTimers());
  afterEach(() => vi.useRealTimers());

  it('re-arms the provisioning timeout instead of retrying from PENDING while a replica waits for capacity', async () => {
    const machine = deploymentMachine.provide({
      actors: {
        prepareSession: fromPromise(async () => {}),
        replica: replicaMachine.provide({
          actors: {
            startSession: fromPromise<SessionStarted, SessionInput>(async () => {
              throw capacityError();
            }),
          },
        }),
        route: routeMachine.provide({ actors: { drainRoute: fromPromise(async () => {}) } }),
      },
    });
    const a = createActor(machine, { input: depInput }).start();
    await flush();
    expect(Object.values(a.getSnapshot().context.replicas)[0]?.waitingForCapacity).toBe(true);
    await vi.advanceTimersByTimeAsync(3 * 900_000 + 10);
    expect(top(a.getSnapshot().value)).toBe('PROVISIONING');
    expect(a.getSnapshot().context.retries).toBe(0);
    a.stop();
  });
});
