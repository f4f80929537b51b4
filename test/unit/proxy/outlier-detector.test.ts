import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { OutlierDetector, type OutlierSubject } from '../../../src/proxy/outlier-detector.ts';

interface S extends OutlierSubject {
  name: string;
}
const subject = (name: string): S => ({
  name,
  failures: 0,
  ejected: false,
  ejections: 0,
  probation: false,
  ejectTimer: undefined,
});

function setup(peers: S[], config = {}) {
  const events: string[] = [];
  const d = new OutlierDetector<S>(
    { consecutive_failures: 3, base_ejection_ms: 1000, max_ejection_ms: 4000, ...config },
    {
      peers: () => peers,
      ejected: (s, reason, ms) => events.push(`ejected ${s.name} ${reason} ${ms}`),
      returned: (s) => events.push(`returned ${s.name}`),
    },
  );
  return { d, events };
}

beforeEach(() => {
  vi.useFakeTimers();
});
afterEach(() => {
  vi.useRealTimers();
});

describe('passive outlier detection', () => {
  it('ejects after N consecutive failures and returns it after the backoff', () => {
    const [a, b] = [subject('a'), subject('b')];
    const { d, events } = setup([a, b]);
    d.failure(a, 'connect');
    d.failure(a, 'connect');
    d.success(a);
    d.failure(a, 'connect');
    d.failure(a, 'connect');
    expect(a.ejected).toBe(false);
    d.failure(a, 'status_5xx');
    expect(a.ejected).toBe(true);
    expect(events).toEqual(['ejected a status_5xx 1000']);
    vi.advanceTimersByTime(1000);
    expect(a.ejected).toBe(false);
    expect(events.at(-1)).toBe('returned a');
  });

  it('doubles the ejection on probation failures, capped, and forgives after a success', () => {
    const [a, b] = [subject('a'), subject('b')];
    const { d, events } = setup([a, b]);
    for (let i = 0; i < 3; i++) d.failure(a, 'connect');
    vi.advanceTimersByTime(1000);
    d.failure(a, 'connect'); // probation: one failure is enough
    vi.advanceTimersByTime(2000);
    d.failure(a, 'connect');
    vi.advanceTimersByTime(4000);
    d.failure(a, 'connect');
    expect(events.filter((e) => e.startsWith('ejected'))).toEqual([
      'ejected a connect 1000',
      'ejected a connect 2000',
      'ejected a connect 4000',
      'ejected a connect 4000',
    ]);
    vi.advanceTimersByTime(4000);
    d.success(a);
    for (let i = 0; i < 3; i++) d.failure(a, 'connect');
    expect(events.at(-1)).toBe('ejected a connect 1000');
  });

  it('never ejects the last replica nor more than the allowed share', () => {
    const solo = subject('solo');
    const { d } = setup([solo]);
    for (let i = 0; i < 10; i++) d.failure(solo, 'connect');
    expect(solo.ejected).toBe(false);

    const four = ['a', 'b', 'c', 'd'].map(subject);
    const { d: d4 } = setup(four, { max_ejection_percent: 50 });
    for (const s of four) for (let i = 0; i < 3; i++) d4.failure(s, 'connect');
    expect(four.filter((s) => s.ejected).length).toBe(2);
  });
});
