import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { ActivationGate, type HeldRequest } from '../../../src/proxy/activation.ts';

/** A held request that records what happened to it. */
function held() {
  const log: string[] = [];
  const r: HeldRequest = {
    resume: () => log.push('resumed'),
    reject: (reason) => log.push(`rejected:${reason}`),
  };
  return { r, log };
}

describe('ActivationGate (virtual clock)', () => {
  beforeEach(() => {
    vi.useFakeTimers();
  });
  afterEach(() => {
    vi.useRealTimers();
  });

  it('20 concurrent held requests ask for one activation, repeated only while they wait', () => {
    const asked: string[] = [];
    const gate = new ActivationGate({ request: (id) => asked.push(id), resendMs: 1_000 });
    const rs = Array.from({ length: 20 }, () => held());
    for (const h of rs) gate.hold('d1', h.r, 100);
    expect(asked).toEqual(['d1']);
    vi.advanceTimersByTime(2_500);
    expect(asked).toEqual(['d1', 'd1', 'd1']);
    gate.release('d1');
    expect(rs.every((h) => h.log.join() === 'resumed')).toBe(true);
    vi.advanceTimersByTime(10_000);
    expect(asked).toHaveLength(3);
    expect(gate.heldCount('d1')).toBe(0);
  });

  it('a request not resumed within the timeout (or its budget, if shorter) is rejected with timeout', () => {
    const gate = new ActivationGate({ request: () => {}, timeoutMs: 5_000 });
    const long = held();
    const short = held();
    gate.hold('d1', long.r, 10);
    gate.hold('d1', short.r, 10, 1_000);
    vi.advanceTimersByTime(999);
    expect(short.log).toEqual([]);
    vi.advanceTimersByTime(1);
    expect(short.log).toEqual(['rejected:timeout']);
    vi.advanceTimersByTime(3_999);
    expect(long.log).toEqual([]);
    vi.advanceTimersByTime(1);
    expect(long.log).toEqual(['rejected:timeout']);
    expect(gate.deployments()).toEqual([]);
  });

  it('bounds the queue, forgets a cancelled request, and rejects what is held on close', () => {
    const gate = new ActivationGate({ request: () => {} });
    const a = held();
    const b = held();
    const c = held();
    gate.hold('d1', a.r, 2);
    gate.hold('d1', b.r, 2);
    gate.hold('d1', c.r, 2);
    expect(c.log).toEqual(['rejected:full']);
    expect(gate.cancel('d1', a.r)).toBe(true);
    expect(gate.cancel('d1', a.r)).toBe(false);
    gate.close();
    expect(a.log).toEqual([]);
    expect(b.log).toEqual(['rejected:closing']);
  });

  it('a failing ask is logged, not thrown, and the request keeps waiting', async () => {
    const warnings: string[] = [];
    const gate = new ActivationGate({
      request: () => Promise.reject(new Error('redis down')),
      warn: (_obj, msg) => warnings.push(msg),
    });
    const h = held();
    gate.hold('d1', h.r, 10);
    await vi.advanceTimersByTimeAsync(0);
    expect(warnings).toEqual(['activation request failed']);
    expect(gate.heldCount('d1')).toBe(1);
    gate.close();
  });
});
