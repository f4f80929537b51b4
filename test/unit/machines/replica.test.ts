import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { createActor, fromPromise, SimulatedClock } from 'xstate';
import {
  type ReplicaInput,
  replicaMachineWithClock,
  type SessionInput,
  type SessionStarted,
  type StopInput,
} from '../../../machines/replica.ts';
import { systemClock } from '../../../src/runtime/provide-effects.ts';
import { pureActor } from './pure-actor.ts';

// The runtime's clock; under vi.useFakeTimers() its time and timers are the fake ones.
const replicaMachine = replicaMachineWithClock(systemClock);

const input: ReplicaInput = {
  replicaId: 'r1',
  deploymentId: 'd1',
  revisionId: 'v1',
  health: { healthy_threshold: 2, unhealthy_threshold: 3, startup_timeout_s: 300 },
  max_restarts: 1,
};

/** The machine with effects that succeed at once and record what they were asked. */
function testReplica() {
  const calls: string[] = [];
  const machine = replicaMachine.provide({
    actions: { notifyParent: () => {} },
    actors: {
      startSession: fromPromise<SessionStarted, SessionInput>(async ({ input: i }) => {
        calls.push(`start:${i.replicaId}`);
        return { endpoint: 'http://127.0.0.1:9' };
      }),
      restartSession: fromPromise<SessionStarted, SessionInput>(async ({ input: i }) => {
        calls.push(`restart:${i.replicaId}`);
        return { endpoint: 'http://127.0.0.1:10' };
      }),
      stopSession: fromPromise<void, StopInput>(async ({ input: i }) => {
        calls.push(`stop:${i.replicaId}`);
      }),
    },
  });
  return { machine, calls };
}

function top(value: unknown): string {
  return typeof value === 'string' ? value : Object.keys(value as object)[0]!;
}

describe('replica machine', () => {
  beforeEach(() => {
    vi.useFakeTimers();
  });
  afterEach(() => {
    vi.useRealTimers();
  });

  // Single steps: XState's pure transition(), no actor and no timers.
  it('becomes HEALTHY after healthy_threshold consecutive successes', () => {
    const { machine } = testReplica();
    const a = pureActor(machine, input);
    a.send({ type: 'replica.health.passed' });
    expect(top(a.getSnapshot().value)).toBe('STARTING');
    a.send({ type: 'replica.health.passed' });
    expect(top(a.getSnapshot().value)).toBe('HEALTHY');
  });

  it('on becoming HEALTHY stops its startup timer, records the transition, tells its parent, clears its deadline', () => {
    const { machine } = testReplica();
    const a = pureActor(machine, input);
    a.send({ type: 'replica.health.passed' });
    a.send({ type: 'replica.health.passed' });
    expect(a.lastActions()).toEqual([
      ['xstate.stopChild', expect.objectContaining({ id: 'startup-deadline' })],
      ['xstate.stopChild', expect.objectContaining({ id: 'start-session' })],
      ['recordTransition', { state: 'HEALTHY' }],
      ['notifyParent', { state: 'HEALTHY' }],
    ]);
    expect(a.getSnapshot().context.deadline).toBeNull();
  });

  it('takes its startup deadline from the provided clock, not the wall clock', () => {
    const clock = new SimulatedClock();
    clock.set(1_000_000);
    const machine = replicaMachineWithClock(clock).provide({ actions: { notifyParent: () => {} } });
    const a = pureActor(machine, input);
    expect(a.getSnapshot().value).toEqual({ STARTING: 'launching' });
    expect(a.getSnapshot().context.deadline).toBe(1_000_000 + 300 * 1000);
    // The timer it would start serves that same deadline; nothing was started.
    expect(a.lastActions()).toContainEqual([
      'xstate.spawnChild',
      expect.objectContaining({
        id: 'startup-deadline',
        input: { deadline: 1_300_000, key: 'startup' },
      }),
    ]);
  });

  it('starts a crash-looping replica only after its delay, measured on the clock', () => {
    const clock = new SimulatedClock();
    clock.set(5_000);
    const machine = replicaMachineWithClock(clock).provide({ actions: { notifyParent: () => {} } });
    const a = pureActor(machine, { ...input, start_delay_s: 4 });
    expect(a.getSnapshot().value).toEqual({ STARTING: 'delayed' });
    expect(a.getSnapshot().context.startNotBefore).toBe(9_000);
    a.send({ type: 'deadline.reached', key: 'start-delay' });
    expect(a.getSnapshot().value).toEqual({ STARTING: 'launching' });
  });

  it('stays HEALTHY until unhealthy_threshold consecutive failures', () => {
    const { machine } = testReplica();
    const a = pureActor(machine, input);
    a.send({ type: 'replica.health.passed' });
    a.send({ type: 'replica.health.passed' });
    a.send({ type: 'replica.health.failed' });
    a.send({ type: 'replica.health.failed' });
    expect(top(a.getSnapshot().value)).toBe('HEALTHY');
    a.send({ type: 'replica.health.failed' });
    expect(top(a.getSnapshot().value)).toBe('UNHEALTHY');
    expect(a.getSnapshot().context.reason).toMatch(/3 consecutive health check failures/);
  });

  it('a success resets the failure count', () => {
    const { machine } = testReplica();
    const a = pureActor(machine, input);
    a.send({ type: 'replica.health.passed' });
    a.send({ type: 'replica.health.passed' });
    for (let i = 0; i < 5; i++) {
      a.send({ type: 'replica.health.failed' });
      a.send({ type: 'replica.health.failed' });
      a.send({ type: 'replica.health.passed' });
    }
    expect(top(a.getSnapshot().value)).toBe('HEALTHY');
  });

  it('goes STARTING -> UNHEALTHY after the startup timeout', async () => {
    const { machine } = testReplica();
    const a = createActor(machine, { input }).start();
    await vi.advanceTimersByTimeAsync(299_000);
    expect(top(a.getSnapshot().value)).toBe('STARTING');
    await vi.advanceTimersByTimeAsync(2_000);
    expect(top(a.getSnapshot().value)).toBe('UNHEALTHY');
    expect(a.getSnapshot().context.reason).toMatch(/startup timeout/);
    a.stop();
  });

  it('runs its startup timer on the provided clock: it fires when that clock passes the deadline', async () => {
    const clock = new SimulatedClock();
    const machine = replicaMachineWithClock(clock).provide({
      actions: { notifyParent: () => {} },
      actors: {
        startSession: fromPromise<SessionStarted, SessionInput>(async () => ({
          endpoint: 'http://127.0.0.1:9',
        })),
      },
    });
    const a = createActor(machine, { input }).start();
    await Promise.resolve();
    clock.increment(299_999);
    expect(top(a.getSnapshot().value)).toBe('STARTING');
    clock.increment(1);
    expect(top(a.getSnapshot().value)).toBe('UNHEALTHY');
    expect(a.getSnapshot().context.reason).toMatch(/startup timeout/);
    a.stop();
  });

  it('goes STARTING -> UNHEALTHY at the original deadline when persisted and restored halfway through the timeout', async () => {
    const { machine } = testReplica();
    const a = createActor(machine, { input }).start();
    await vi.advanceTimersByTimeAsync(150_000);
    const persisted = JSON.parse(JSON.stringify(a.getPersistedSnapshot()));
    a.stop();

    const b = createActor(machine, { snapshot: persisted, input }).start();
    expect(top(b.getSnapshot().value)).toBe('STARTING');
    await vi.advanceTimersByTimeAsync(149_000);
    expect(top(b.getSnapshot().value)).toBe('STARTING');
    await vi.advanceTimersByTimeAsync(2_000);
    expect(top(b.getSnapshot().value)).toBe('UNHEALTHY');
    b.stop();
  });

  it('restores a deadline that passed while it was down and fires it at once', async () => {
    const { machine } = testReplica();
    const a = createActor(machine, { input }).start();
    await vi.advanceTimersByTimeAsync(100_000);
    const persisted = JSON.parse(JSON.stringify(a.getPersistedSnapshot()));
    a.stop();
    vi.setSystemTime(Date.now() + 400_000);
    const b = createActor(machine, { snapshot: persisted, input }).start();
    await vi.advanceTimersByTimeAsync(10);
    expect(top(b.getSnapshot().value)).toBe('UNHEALTHY');
    b.stop();
  });

  it('UNHEALTHY attempts a restart, then terminates for regeneration when still failing', async () => {
    const { machine, calls } = testReplica();
    const a = createActor(machine, { input }).start();
    a.send({ type: 'replica.health.passed' });
    a.send({ type: 'replica.health.passed' });
    a.send({ type: 'replica.session.exited', detail: 'exit code 1' });
    expect(a.getSnapshot().value).toEqual({ UNHEALTHY: 'backoff' });
    await vi.advanceTimersByTimeAsync(1_100); // backoff 1 s
    expect(calls).toContain('restart:r1');
    expect(a.getSnapshot().value).toEqual({ UNHEALTHY: 'observing' });
    await vi.advanceTimersByTimeAsync(300_000 + 2_100); // observe window, then backoff 2 s
    const snap = a.getSnapshot();
    expect(snap.status).toBe('done');
    expect(top(snap.value)).toBe('TERMINATED');
    expect(snap.context.terminationCause).toBe('recovery-failed');
    expect(calls.filter((c) => c.startsWith('restart'))).toHaveLength(1);
    expect(calls).toContain('stop:r1');
  });

  it('recovers to HEALTHY when the restarted session passes its checks', async () => {
    const { machine } = testReplica();
    const a = createActor(machine, { input }).start();
    a.send({ type: 'replica.session.exited' });
    await vi.advanceTimersByTimeAsync(1_100);
    a.send({ type: 'replica.health.passed' });
    a.send({ type: 'replica.health.passed' });
    expect(top(a.getSnapshot().value)).toBe('HEALTHY');
    a.stop();
  });

  it('ignores checks that pass while no session runs (a late result from before the exit): HEALTHY only after the restart', async () => {
    const { machine, calls } = testReplica();
    const a = createActor(machine, { input }).start();
    a.send({ type: 'replica.health.passed' });
    a.send({ type: 'replica.health.passed' });
    expect(top(a.getSnapshot().value)).toBe('HEALTHY');
    a.send({ type: 'replica.session.exited', detail: 'killed' });
    // Probes taken before the kill, answered after it: they must not bring a dead session back.
    a.send({ type: 'replica.health.passed' });
    a.send({ type: 'replica.health.passed' });
    expect(a.getSnapshot().value).toEqual({ UNHEALTHY: 'backoff' });
    await vi.advanceTimersByTimeAsync(1_100); // backoff 1 s, then the restart
    expect(calls).toContain('restart:r1');
    a.send({ type: 'replica.health.passed' });
    a.send({ type: 'replica.health.passed' });
    expect(top(a.getSnapshot().value)).toBe('HEALTHY');
    expect(a.getSnapshot().context.restarts).toBe(1);
    a.stop();
  });

  it('forces the stop when the session does not end within the termination timeout', async () => {
    const calls: string[] = [];
    const machine = replicaMachine.provide({
      actions: { notifyParent: () => {} },
      actors: {
        startSession: fromPromise<SessionStarted, SessionInput>(async () => ({
          endpoint: 'http://127.0.0.1:9',
        })),
        stopSession: fromPromise<void, StopInput>(async ({ input: i }) => {
          calls.push(i.force ? 'force' : 'graceful');
          if (!i.force) await new Promise(() => {}); // a session that never ends by itself
        }),
      },
    });
    const a = createActor(machine, { input: { ...input, terminate_timeout_s: 5 } }).start();
    a.send({ type: 'replica.terminate', cause: 'scale-down' });
    await vi.advanceTimersByTimeAsync(5_100);
    expect(calls).toEqual(['graceful', 'force']);
    expect(top(a.getSnapshot().value)).toBe('TERMINATED');
    expect(a.getSnapshot().context.reason).toBe('stop forced after timeout');
  });
});
