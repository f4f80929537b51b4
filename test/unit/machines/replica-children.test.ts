import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { createActor, fromPromise } from 'xstate';
import {
  type ReplicaInput,
  replicaMachineWithClock,
  type SessionInput,
  type SessionStarted,
} from '../../../machines/replica.ts';
import { systemClock } from '../../../src/runtime/system-clock.ts';

const input: ReplicaInput = {
  replicaId: 'r1',
  deploymentId: 'd1',
  revisionId: 'v1',
  health: { healthy_threshold: 1, unhealthy_threshold: 2, startup_timeout_s: 60 },
};

describe('replica children', () => {
  beforeEach(() => {
    vi.useFakeTimers();
  });
  afterEach(() => {
    vi.useRealTimers();
  });

  it('drops the finished start-session child (no done actor kept per replica, nor in its snapshot), staying STARTING', async () => {
    const machine = replicaMachineWithClock(systemClock).provide({
      actions: { notifyParent: () => {} },
      actors: {
        startSession: fromPromise<SessionStarted, SessionInput>(async () => ({
          endpoint: 'http://127.0.0.1:9',
        })),
      },
    });
    const a = createActor(machine, { input }).start();
    expect(Object.keys(a.getSnapshot().children).sort()).toEqual([
      'start-session',
      'startup-deadline',
    ]);
    await vi.advanceTimersByTimeAsync(1);
    expect(a.getSnapshot().value).toEqual({ STARTING: 'launching' });
    expect(a.getSnapshot().context.endpoint).toBe('http://127.0.0.1:9');
    expect(Object.keys(a.getSnapshot().children)).toEqual(['startup-deadline']);
    const persisted = JSON.parse(JSON.stringify(a.getPersistedSnapshot()));
    expect(Object.keys(persisted.children)).toEqual(['startup-deadline']);
    a.stop();

    // Restored, it keeps its endpoint and its startup deadline, and starts no session again.
    let starts = 0;
    const counting = machine.provide({
      actors: {
        startSession: fromPromise<SessionStarted, SessionInput>(async () => {
          starts++;
          return { endpoint: 'http://127.0.0.1:10' };
        }),
      },
    });
    const b = createActor(counting, { snapshot: persisted, input }).start();
    await vi.advanceTimersByTimeAsync(1);
    expect(starts).toBe(0);
    expect(b.getSnapshot().context.endpoint).toBe('http://127.0.0.1:9');
    await vi.advanceTimersByTimeAsync(60_000);
    expect(Object.keys(b.getSnapshot().value as object)[0]).toBe('UNHEALTHY');
    b.stop();
  });
});
