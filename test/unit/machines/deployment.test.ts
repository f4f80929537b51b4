import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { type AnyActorRef, createActor, fromPromise, SimulatedClock } from 'xstate';
import {
  type deploymentMachine as bareDeploymentMachine,
  type DeploymentInput,
  deploymentMachineWithClock,
  planReplicas,
  type ReplicaEntry,
  replicaActorId,
  routeActorId,
} from '../../../machines/deployment.ts';
import {
  replicaMachineWithClock,
  type SessionInput,
  type SessionStarted,
  type StopInput,
} from '../../../machines/replica.ts';
import { routeMachineWithClock } from '../../../machines/route.ts';
import {
  childrenOf,
  deploymentContextOf,
  replicaContextOf,
  replicaRef,
  routeContextOf,
  routeRef,
} from '../../../machines/types.ts';
import { systemClock } from '../../../src/runtime/provide-effects.ts';
import { pureActor } from './pure-actor.ts';

// The runtime's clock; under vi.useFakeTimers() its time and timers are the fake ones.
const deploymentMachine = deploymentMachineWithClock(systemClock);
const replicaMachine = replicaMachineWithClock(systemClock);
const routeMachine = routeMachineWithClock(systemClock);

const input: DeploymentInput = {
  deploymentId: 'd1',
  name: 'echo',
  revisionId: 'v1',
  replicas: 2,
  min_replicas: 0,
  max_replicas: 5,
  settings: { health: { healthy_threshold: 1, unhealthy_threshold: 2, startup_timeout_s: 60 } },
};

function testDeployment(opts: { generatorFails?: boolean } = {}) {
  const started: string[] = [];
  const stopped: string[] = [];
  const machine = deploymentMachine.provide({
    actors: {
      prepareSession: fromPromise(async () => {
        if (opts.generatorFails) throw new Error('unknown image');
      }),
      replica: replicaMachine.provide({
        actors: {
          startSession: fromPromise<SessionStarted, SessionInput>(async ({ input: i }) => {
            started.push(i.replicaId);
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
  const actor = createActor(machine, { input });
  const child = (id: string) => actor.system.get(id) as AnyActorRef | undefined;
  const passReplica = (replicaId: string) =>
    child(replicaActorId(replicaId))?.send({ type: 'replica.health.passed' });
  const passRoute = (routeId: string) =>
    child(routeActorId(routeId))?.send({
      type: 'route.health.healthy',
      reason: 'ok',
      at: Date.now(),
    });
  const passAll = () => {
    for (const [id, r] of Object.entries(actor.getSnapshot().context.replicas)) {
      passReplica(id);
      passRoute(r.routeId);
    }
  };
  return { actor, started, stopped, child, passAll };
}

const flush = () => vi.advanceTimersByTimeAsync(1);
const top = (v: unknown) => (typeof v === 'string' ? v : Object.keys(v as object)[0]!);

describe('deployment machine', () => {
  beforeEach(() => {
    vi.useFakeTimers();
  });
  afterEach(() => {
    vi.useRealTimers();
  });

  it('goes PENDING -> PROVISIONING -> RUNNING once a replica is HEALTHY', async () => {
    const { actor, started, passAll } = testDeployment();
    actor.start();
    await flush();
    expect(top(actor.getSnapshot().value)).toBe('PROVISIONING');
    expect(started).toEqual(['d1-r1', 'd1-r2']);
    passAll();
    expect(top(actor.getSnapshot().value)).toBe('RUNNING');
    const routes = Object.values(actor.getSnapshot().context.replicas).map((r) => r.routeState);
    expect(routes).toEqual(['HEALTHY', 'HEALTHY']);
  });

  it('goes PENDING -> ERROR when the definition generator fails', async () => {
    const { actor } = testDeployment({ generatorFails: true });
    actor.start();
    await flush();
    expect(top(actor.getSnapshot().value)).toBe('ERROR');
    expect(actor.getSnapshot().context.reason).toMatch(/unknown image/);
  });

  it('scales up and down in RUNNING, draining the route before stopping the replica', async () => {
    const { actor, started, stopped, passAll } = testDeployment();
    actor.start();
    await flush();
    passAll();
    actor.send({ type: 'deployment.scale', replicas: 3 });
    await flush();
    expect(started).toEqual(['d1-r1', 'd1-r2', 'd1-r3']);
    passAll();
    actor.send({ type: 'deployment.scale', replicas: 1 });
    await flush();
    await flush();
    expect(stopped.sort()).toEqual(['d1-r2', 'd1-r3']);
    expect(Object.keys(actor.getSnapshot().context.replicas)).toEqual(['d1-r1']);
    // Terminated children are stopped and dropped (docs/xstate-rules.md rule 8).
    expect(Object.keys(actor.getSnapshot().children).sort()).toEqual([
      replicaActorId('d1-r1'),
      routeActorId('d1-t1'),
    ]);
  });

  it('creates no replica for a scale event sent after the delete request', async () => {
    const { actor, started, passAll } = testDeployment();
    actor.start();
    await flush();
    passAll();
    expect(actor.getSnapshot().can({ type: 'deployment.scale', replicas: 4 })).toBe(true);
    actor.send({ type: 'deployment.delete' });
    actor.send({ type: 'deployment.scale', replicas: 4 });
    await flush();
    await flush();
    expect(started).toEqual(['d1-r1', 'd1-r2']);
    expect(top(actor.getSnapshot().value)).toBe('TERMINATED');
  });

  it('stays in DESTROYING while a replica is still stopping, and takes no scale event there', async () => {
    let release!: () => void;
    const machine = deploymentMachine.provide({
      actors: {
        prepareSession: fromPromise(async () => {}),
        replica: replicaMachine.provide({
          actors: {
            startSession: fromPromise(async () => ({ endpoint: 'http://127.0.0.1:1' })),
            stopSession: fromPromise(() => new Promise<void>((r) => (release = r))),
          },
        }),
        route: routeMachine.provide({ actors: { drainRoute: fromPromise(async () => {}) } }),
      },
    });
    const actor = createActor(machine, { input: { ...input, replicas: 1 } }).start();
    await flush();
    actor.send({ type: 'deployment.delete' });
    await flush();
    expect(top(actor.getSnapshot().value)).toBe('DESTROYING');
    expect(actor.getSnapshot().can({ type: 'deployment.scale', replicas: 3 })).toBe(false);
    const before = Object.keys(actor.getSnapshot().context.replicas);
    actor.send({ type: 'deployment.scale', replicas: 3 });
    expect(Object.keys(actor.getSnapshot().context.replicas)).toEqual(before);
    release();
    await flush();
    await flush();
    expect(top(actor.getSnapshot().value)).toBe('TERMINATED');
  });

  it('the typed tree helpers find its replicas and routes by id, with their contexts', async () => {
    const { actor, passAll } = testDeployment();
    actor.start();
    await flush();
    passAll();
    const { replicas, routes } = childrenOf(actor.getSnapshot());
    expect(Object.keys(replicas).sort()).toEqual(['d1-r1', 'd1-r2']);
    expect(Object.keys(routes).sort()).toEqual(['d1-t1', 'd1-t2']);
    expect(replicaContextOf(replicas['d1-r1']!).replicaId).toBe('d1-r1');
    expect(routeContextOf(routes['d1-t2']!).replicaId).toBe('d1-r2');
    expect(replicaRef(actor.system, 'd1-r2')).toBe(replicas['d1-r2']);
    expect(routeRef(actor.system, 'd1-t1')).toBe(routes['d1-t1']);
    expect(replicaRef(actor.system, 'd1-r9')).toBeUndefined();
    expect(deploymentContextOf(actor).target).toBe(2);
  });

  it('regenerates a replica that terminated after failed recovery', async () => {
    const { actor, started, child, passAll } = testDeployment();
    actor.start();
    await flush();
    passAll();
    child(replicaActorId('d1-r1'))?.send({ type: 'replica.terminate', cause: 'recovery-failed' });
    await flush();
    await flush();
    expect(Object.keys(actor.getSnapshot().context.replicas).sort()).toEqual(['d1-r2', 'd1-r3']);
    // The replacement waits out the crash-loop backoff (1 s after one failure) before starting.
    expect(actor.getSnapshot().context.crashLoops).toBe(1);
    expect(started).toEqual(['d1-r1', 'd1-r2']);
    await vi.advanceTimersByTimeAsync(1_100);
    expect(started).toEqual(['d1-r1', 'd1-r2', 'd1-r3']);
  });

  it('backs off exponentially across consecutive failed recoveries and resets once a replica is HEALTHY', async () => {
    const { actor, started, child, passAll } = testDeployment();
    actor.start();
    await flush();
    passAll();
    const failNewest = async () => {
      const ids = Object.keys(actor.getSnapshot().context.replicas);
      child(replicaActorId(ids[ids.length - 1]!))?.send({
        type: 'replica.terminate',
        cause: 'recovery-failed',
      });
      await flush();
      await flush();
    };
    const startsAfter = async (ms: number) => {
      const n = started.length;
      await vi.advanceTimersByTimeAsync(ms - 100);
      const early = started.length;
      await vi.advanceTimersByTimeAsync(200);
      return { early: early - n, onTime: started.length - n };
    };
    await failNewest();
    expect(await startsAfter(1_000)).toEqual({ early: 0, onTime: 1 });
    await failNewest();
    expect(await startsAfter(2_000)).toEqual({ early: 0, onTime: 1 });
    await failNewest();
    expect(await startsAfter(4_000)).toEqual({ early: 0, onTime: 1 });
    expect(actor.getSnapshot().context.crashLoops).toBe(3);
    passAll();
    expect(actor.getSnapshot().context.crashLoops).toBe(0);
  });

  it('evicts routes whose status is a cleanup target and replaces their replicas', async () => {
    const { actor, started, child, passAll } = testDeployment();
    actor.start();
    await flush();
    passAll();
    child(routeActorId('d1-t2'))?.send({
      type: 'route.health.unhealthy',
      reason: 'HTTP 500',
      at: 1,
    });
    actor.send({ type: 'deployment.evict', statuses: ['degraded'] });
    await flush();
    expect(started).toHaveLength(2);
    actor.send({ type: 'deployment.evict', statuses: ['unhealthy'] });
    await flush();
    await flush();
    expect(started).toEqual(['d1-r1', 'd1-r2', 'd1-r3']);
    expect(Object.keys(actor.getSnapshot().context.replicas).sort()).toEqual(['d1-r1', 'd1-r3']);
  });

  it('rolls a new revision out without ever having fewer HEALTHY replicas than before', async () => {
    const { actor, passAll } = testDeployment();
    actor.start();
    await flush();
    passAll();
    const healthy = () =>
      Object.values(actor.getSnapshot().context.replicas).filter(
        (r) => r.state === 'HEALTHY' && !r.leaving,
      ).length;
    actor.send({ type: 'deployment.update', revisionId: 'v2' });
    const seen: number[] = [];
    for (let i = 0; i < 10; i++) {
      seen.push(healthy());
      passAll();
      await flush();
    }
    const revisions = Object.values(actor.getSnapshot().context.replicas).map((r) => r.revisionId);
    expect(revisions).toEqual(['v2', 'v2']);
    expect(Math.min(...seen)).toBeGreaterThanOrEqual(2);
  });

  it('returns from PROVISIONING to PENDING when no replica becomes HEALTHY in time, then retries', async () => {
    const { actor } = testDeployment();
    actor.start();
    await flush();
    expect(top(actor.getSnapshot().value)).toBe('PROVISIONING');
    await vi.advanceTimersByTimeAsync(900_000 + 10);
    // Back through PENDING (retry with backoff), then PROVISIONING again.
    expect(actor.getSnapshot().context.retries).toBe(1);
    expect(actor.getSnapshot().context.reason).toMatch(/retrying/);
    await vi.advanceTimersByTimeAsync(2_100);
    expect(top(actor.getSnapshot().value)).toBe('PROVISIONING');
  });

  it('restores a running deployment with its children from a JSON round trip without replaying effects', async () => {
    const { actor, started, passAll } = testDeployment();
    actor.start();
    await flush();
    passAll();
    const persisted = JSON.parse(JSON.stringify(actor.getPersistedSnapshot()));
    actor.stop();
    const again = testDeployment();
    const restored = createActor(again.actor.logic as typeof bareDeploymentMachine, {
      snapshot: persisted,
      input,
    }).start();
    await flush();
    expect(top(restored.getSnapshot().value)).toBe('RUNNING');
    expect(Object.keys(restored.getSnapshot().children).sort()).toEqual(
      Object.keys(persisted.children).sort(),
    );
    // HEALTHY replicas invoke nothing, so nothing is started again.
    expect(again.started).toEqual([]);
    expect(started).toEqual(['d1-r1', 'd1-r2']);
    restored.send({ type: 'deployment.scale', replicas: 3 });
    await flush();
    expect(again.started).toEqual(['d1-r3']);
  });
});

describe('deployment machine, single steps (pure transition(): no actor, no effects, no timers)', () => {
  const pureDeployment = (at = 0) => {
    const clock = new SimulatedClock();
    clock.set(at);
    return pureActor(deploymentMachineWithClock(clock), input);
  };

  it('starts in PENDING, records it, and invokes the definition generator', () => {
    const a = pureDeployment();
    expect(a.getSnapshot().value).toEqual({ PENDING: 'generating' });
    expect(a.lastActions()).toEqual([
      ['recordTransition', { state: 'PENDING' }],
      ['xstate.spawnChild', expect.objectContaining({ id: 'generate', src: 'prepareSession' })],
    ]);
  });

  it('takes a scale within min/max in PENDING and records the change; refuses one outside', () => {
    const a = pureDeployment();
    a.send({ type: 'deployment.scale', replicas: 6 }); // max_replicas is 5
    expect(a.getSnapshot().context.target).toBe(2);
    expect(a.lastActions()).toEqual([]);
    a.send({ type: 'deployment.scale', replicas: 4 });
    expect(a.getSnapshot().context.target).toBe(4);
    expect(a.lastActions()).toEqual([['recordChange', undefined]]);
  });

  it('on the generated definition enters PROVISIONING with a deadline from its clock and spawns replicas and routes', () => {
    const a = pureDeployment(10_000);
    // The generator's done event is XState's own, outside the machine's declared event union.
    a.send({ type: 'xstate.done.actor.generate', output: undefined, actorId: 'generate' } as never);
    expect(top(a.getSnapshot().value)).toBe('PROVISIONING');
    expect(a.getSnapshot().context.deadline).toBe(10_000 + 900 * 1000);
    const spawned = a
      .lastActions()
      .filter(([type]) => type === 'xstate.spawnChild')
      .map(([, p]) => (p as { id: string }).id);
    expect(spawned.sort()).toEqual(
      [
        'provision-deadline',
        replicaActorId('d1-r1'),
        replicaActorId('d1-r2'),
        routeActorId('d1-t1'),
        routeActorId('d1-t2'),
      ].sort(),
    );
  });
});

describe('planReplicas', () => {
  const entry = (revisionId: string, state: ReplicaEntry['state'], seq: number): ReplicaEntry => ({
    revisionId,
    state,
    routeId: `t${seq}`,
    routeState: 'HEALTHY',
    endpoint: 'x',
    leaving: false,
    seq,
  });

  it('removes starting and unhealthy replicas before healthy ones, newest first', () => {
    const plan = planReplicas({
      revisionId: 'v1',
      target: 1,
      replicas: {
        a: entry('v1', 'HEALTHY', 1),
        b: entry('v1', 'HEALTHY', 2),
        c: entry('v1', 'UNHEALTHY', 3),
      },
    });
    expect(plan).toEqual({ spawn: 0, terminate: ['c', 'b'] });
  });

  it("follows the scale request's removal order inside a state rank (the autoscaler's least busy first)", () => {
    const plan = planReplicas({
      revisionId: 'v1',
      target: 2,
      removalPreference: ['a', 'd', 'b'],
      replicas: {
        a: entry('v1', 'HEALTHY', 1),
        b: entry('v1', 'HEALTHY', 2),
        c: entry('v1', 'HEALTHY', 3),
        d: entry('v1', 'STARTING', 4),
      },
    });
    // STARTING d still goes first (it serves nothing), then the preferred HEALTHY a.
    expect(plan).toEqual({ spawn: 0, terminate: ['d', 'a'] });
  });
});
