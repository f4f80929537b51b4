import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { createActor, fromPromise } from 'xstate';
import {
  type ReplicaInput,
  replicaMachineWithClock,
  type SessionInput,
  type SessionStarted,
} from '../../../machines/replica.ts';
import { DeadlineScheduler } from '../../../src/runtime/deadline-scheduler.ts';
import { systemClock } from '../../../src/runtime/system-clock.ts';

// The base clock is the system clock; under vi.useFakeTimers() its time and timers are fake,
// and each platform timer the scheduler arms is one fake timer (one macrotask).
describe('DeadlineScheduler', () => {
  beforeEach(() => {
    vi.useFakeTimers();
  });
  afterEach(() => {
    vi.useRealTimers();
  });

  it('runs each callback at its due time, never before, equal due times in the order set', () => {
    const s = new DeadlineScheduler(systemClock);
    const ran: string[] = [];
    s.setTimeout(() => ran.push('b@200'), 200);
    s.setTimeout(() => ran.push('a@100'), 100);
    s.setTimeout(() => ran.push('c@200'), 200);
    vi.advanceTimersByTime(99);
    expect(ran).toEqual([]);
    vi.advanceTimersByTime(1);
    expect(ran).toEqual(['a@100']);
    vi.advanceTimersByTime(100);
    expect(ran).toEqual(['a@100', 'b@200', 'c@200']);
  });

  it('never runs a cleared callback, and keeps one platform timer for all its deadlines', () => {
    const s = new DeadlineScheduler(systemClock);
    const ran: number[] = [];
    const ids = Array.from({ length: 5_000 }, (_, i) => s.setTimeout(() => ran.push(i), 1_000 + i));
    expect(vi.getTimerCount()).toBe(1);
    for (let i = 0; i < 5_000; i += 2) s.clearTimeout(ids[i]);
    expect(s.pending).toBe(2_500);
    vi.advanceTimersByTime(10_000);
    expect(ran).toHaveLength(2_500);
    expect(ran.every((i) => i % 2 === 1)).toBe(true);
  });

  it('leaves no platform timer once every deadline is cleared (a stopped tree lets the process exit)', () => {
    const s = new DeadlineScheduler(systemClock);
    const ids = Array.from({ length: 3_000 }, (_, i) => s.setTimeout(() => {}, 60_000 + i));
    expect(vi.getTimerCount()).toBe(1);
    for (const id of ids) s.clearTimeout(id);
    expect(vi.getTimerCount()).toBe(0);
    expect(s.pending).toBe(0);
  });

  it('while held runs nothing; on release runs what fell due, in batches of one macrotask each', () => {
    const s = new DeadlineScheduler(systemClock, { batch: 100, held: true });
    let ran = 0;
    for (let i = 0; i < 1_000; i++) s.setTimeout(() => ran++, i % 10);
    expect(vi.getTimerCount()).toBe(0);
    vi.advanceTimersByTime(60_000);
    expect(ran).toBe(0);
    s.release();
    vi.advanceTimersToNextTimer();
    expect(ran).toBe(100);
    vi.advanceTimersToNextTimer();
    expect(ran).toBe(200);
    let macrotasks = 2;
    while (vi.getTimerCount() > 0) {
      vi.advanceTimersToNextTimer();
      macrotasks++;
    }
    expect(ran).toBe(1_000);
    expect(macrotasks).toBe(10);
  });

  it('hold and release nest; close drops every pending deadline and ignores later ones', () => {
    const s = new DeadlineScheduler(systemClock);
    let ran = 0;
    s.setTimeout(() => ran++, 10);
    s.hold();
    s.hold();
    s.release();
    vi.advanceTimersByTime(20);
    expect(ran).toBe(0);
    s.release();
    vi.advanceTimersByTime(0);
    expect(ran).toBe(1);
    s.setTimeout(() => ran++, 10);
    s.close();
    s.setTimeout(() => ran++, 10);
    vi.advanceTimersByTime(100);
    expect(ran).toBe(1);
    expect(vi.getTimerCount()).toBe(0);
  });

  it('a restored STARTING replica past its startup deadline still fails, once the scheduler is released', async () => {
    const input: ReplicaInput = {
      replicaId: 'r1',
      deploymentId: 'd1',
      revisionId: 'v1',
      health: { healthy_threshold: 1, unhealthy_threshold: 2, startup_timeout_s: 60 },
    };
    const machineOn = (clock: DeadlineScheduler) =>
      replicaMachineWithClock(clock).provide({
        actions: { notifyParent: () => {} },
        actors: {
          startSession: fromPromise<SessionStarted, SessionInput>(async () => ({
            endpoint: 'http://127.0.0.1:9',
          })),
        },
      });
    const first = createActor(machineOn(new DeadlineScheduler(systemClock)), { input }).start();
    await vi.advanceTimersByTimeAsync(1_000);
    const persisted = JSON.parse(JSON.stringify(first.getPersistedSnapshot()));
    first.stop();
    vi.setSystemTime(Date.now() + 20 * 60_000); // the coordinator was down for 20 minutes

    const restoredClock = new DeadlineScheduler(systemClock, { held: true });
    const b = createActor(machineOn(restoredClock), { snapshot: persisted, input }).start();
    await vi.advanceTimersByTimeAsync(1_000);
    expect(b.getSnapshot().value).toEqual({ STARTING: 'launching' });
    restoredClock.release();
    await vi.advanceTimersByTimeAsync(1);
    expect(Object.keys(b.getSnapshot().value as object)[0]).toBe('UNHEALTHY');
    expect(b.getSnapshot().context.reason).toMatch(/startup timeout/);
    b.stop();
  });
});
