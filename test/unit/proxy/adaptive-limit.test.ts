import { describe, expect, it } from 'vitest';
import { AdaptiveLimit } from '../../../src/proxy/adaptive-limit.ts';

/**
 * A simulated replica on a virtual clock: `capacity` requests at once at `baseMs` to the
 * first byte; above it the first byte slows in proportion to the overload (a batch that no
 * longer fits). Clients keep the proxy full: the replica runs exactly `limit` requests.
 */
function latencyAt(concurrency: number, capacity: number, baseMs: number): number {
  return concurrency <= capacity ? baseMs : baseMs * (concurrency / capacity) ** 2;
}

/** Runs `ms` of virtual time; every 10 ms each in-flight slot yields one sample. */
function drive(
  l: AdaptiveLimit,
  clock: { now: number },
  ms: number,
  latency: (concurrency: number) => number,
  demand = Number.POSITIVE_INFINITY,
): number[] {
  const seen: number[] = [];
  for (const end = clock.now + ms; clock.now < end; clock.now += 10) {
    const running = Math.min(l.limit, demand);
    for (let i = 0; i < Math.max(1, Math.ceil(running / 4)); i++) {
      l.sample(clock.now, latency(running), running);
    }
    seen.push(l.limit);
  }
  return seen;
}

const fixedRandom = () => 0.5;

describe('adaptive limit (virtual clock)', () => {
  it("starts at its initial limit, takes the first window's fastest sample as minRtt, climbs to the capacity", () => {
    const l = new AdaptiveLimit({
      minLimit: 1,
      maxLimit: 256,
      initialLimit: 8,
      random: fixedRandom,
    });
    const clock = { now: 0 };
    expect(l.limit).toBe(8);
    expect(l.minRtt).toBeUndefined();
    drive(l, clock, 300, (c) => latencyAt(c, 40, 20));
    expect(l.minRtt).toBe(20);
    drive(l, clock, 20_000, (c) => latencyAt(c, 40, 20));
    expect(l.minRtt).toBe(20);
    // Latency tolerance 50 %: (c/40)² ≤ 1.5 up to c ≈ 49; settles around the capacity.
    expect(l.limit).toBeGreaterThanOrEqual(32);
    expect(l.limit).toBeLessThanOrEqual(64);
  });

  it('never exceeds the variant maximum however fast the replica stays', () => {
    const l = new AdaptiveLimit({ minLimit: 1, maxLimit: 24, random: fixedRandom });
    const clock = { now: 0 };
    const seen = drive(l, clock, 20_000, () => 15);
    expect(Math.max(...seen)).toBe(24);
    expect(l.limit).toBe(24);
  });

  it('started above the capacity (a big fixed default), comes down to it', () => {
    const l = new AdaptiveLimit({
      minLimit: 1,
      maxLimit: 256,
      initialLimit: 256,
      random: fixedRandom,
    });
    const clock = { now: 0 };
    // The first window already runs 256 at once: its fastest sample is slow, so minRtt is
    // too high until the first probe (2 s later) measures it at 3 in flight.
    drive(l, clock, 1_500, (c) => latencyAt(c, 16, 10));
    expect(l.limit).toBe(256);
    drive(l, clock, 8_000, (c) => latencyAt(c, 16, 10));
    expect(l.minRtt).toBe(10);
    // Around the knee (16; 50 % latency tolerance allows ≈ 19.6, √limit headroom on top).
    expect(l.limit).toBeGreaterThanOrEqual(12);
    expect(l.limit).toBeLessThanOrEqual(32);
  });

  it('backs off when the replica degrades, and climbs again when it recovers', () => {
    const l = new AdaptiveLimit({ minLimit: 1, maxLimit: 256, random: fixedRandom });
    const clock = { now: 0 };
    drive(l, clock, 10_000, (c) => latencyAt(c, 64, 10));
    const before = l.limit;
    expect(before).toBeGreaterThanOrEqual(48);
    // The replica now takes only 16 at its old speed (e.g. another tenant on the GPU).
    drive(l, clock, 5_000, (c) => latencyAt(c, 16, 10));
    expect(l.limit).toBeLessThanOrEqual(24);
    drive(l, clock, 10_000, (c) => latencyAt(c, 64, 10));
    expect(l.limit).toBeGreaterThanOrEqual(48);
  });

  it('does not grow on an idle replica (too little traffic to tell its capacity)', () => {
    const l = new AdaptiveLimit({ minLimit: 1, maxLimit: 256, random: fixedRandom });
    const clock = { now: 0 };
    drive(l, clock, 300, () => 10);
    // One window to leave the busy period behind, then only 2 requests at a time.
    drive(l, clock, 500, () => 10, 2);
    const start = l.limit;
    expect(start).toBeGreaterThan(4);
    drive(l, clock, 10_000, () => 10, 2);
    expect(l.limit).toBe(start);
  });

  it('re-measures the unloaded latency after the probe interval, pinned at the probe limit', () => {
    const l = new AdaptiveLimit({
      minLimit: 1,
      maxLimit: 100,
      probeIntervalMs: 5_000,
      random: () => 0,
    });
    const clock = { now: 0 };
    drive(l, clock, 4_000, () => 10);
    expect(l.minRtt).toBe(10);
    expect(l.limit).toBe(100);
    // The unloaded latency drifts up to 30 ms (a longer prompt mix). Until the next probe it
    // reads as overload and the limit shrinks; the probe (pinned at 3) measures 30 ms, and
    // the limit climbs back to the maximum.
    const seen = drive(l, clock, 8_000, () => 30);
    expect(Math.min(...seen)).toBeLessThanOrEqual(3);
    expect(l.minRtt).toBe(30);
    expect(l.probing).toBe(false);
    expect(l.limit).toBe(100);
  });

  it('cuts the limit by the backoff factor on a drop and never below the minimum', () => {
    const l = new AdaptiveLimit({ minLimit: 2, maxLimit: 100, random: fixedRandom });
    const clock = { now: 0 };
    drive(l, clock, 5_000, () => 10);
    expect(l.limit).toBe(100);
    expect(l.drop()).toBe(true);
    expect(l.limit).toBe(90);
    for (let i = 0; i < 100; i++) l.drop();
    expect(l.limit).toBe(2);
  });
});
