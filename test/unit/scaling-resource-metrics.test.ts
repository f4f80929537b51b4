/**
 * The cpu/memory utilization math of src/scaling/resource-metrics.ts on a virtual clock: the
 * sampler's timestamps come from a manual clock, the readings from the fake backend's simulated
 * usage (FakeMachine.setUsage), so no test waits on wall time or spends CPU.
 */
import { describe, expect, it } from 'vitest';
import type { ResourceSlots } from '../../src/domain/session.ts';
import type { Clock } from '../../src/runtime/system-clock.ts';
import {
  cpuUtilization,
  createResourceMetrics,
  memoryUtilization,
} from '../../src/scaling/resource-metrics.ts';
import { FAKE_IDLE_RSS_BYTES, FakeBackend } from '../harness/fake-backend.ts';
import { sessionSpec } from '../integration/backends/helpers.ts';

const MiB = 1024 * 1024;

function manualClock(start = 1_000_000): Clock & { advance(ms: number): void } {
  let now = start;
  return {
    now: () => now,
    setTimeout: () => undefined,
    clearTimeout: () => {},
    advance(ms) {
      now += ms;
    },
  };
}

async function setup(resources: Record<string, ResourceSlots>, windowMs = 10_000) {
  const backend = new FakeBackend();
  for (const [id, r] of Object.entries(resources)) {
    await backend.start(id, sessionSpec(['idle'], { resources: r }));
  }
  const clock = manualClock();
  const sampler = createResourceMetrics({
    backend,
    clock,
    intervalMs: 1000,
    windowMs,
    autoStart: false,
    replicas: () => Object.keys(resources),
  });
  /** `seconds` of wall time pass, replica `id` busy `busy` of them (in CPU seconds). */
  const tick = async (ms: number, busy: Record<string, number> = {}) => {
    clock.advance(ms);
    for (const [id, s] of Object.entries(busy)) backend.machine.setUsage(id, { addCpuSeconds: s });
    await sampler.sample();
  };
  return { backend, sampler, tick, clock };
}

describe('resource utilization math', () => {
  it('cpu is CPU seconds per wall second over the requested cores, in percent', () => {
    const a = { at: 0, cpuSeconds: 10, rssBytes: 0 };
    const b = { at: 4000, cpuSeconds: 12, rssBytes: 0 };
    expect(cpuUtilization(a, b, 1)).toBe(50);
    expect(cpuUtilization(a, b, 0.5)).toBe(100);
    expect(cpuUtilization(a, b, 2)).toBe(25);
  });

  it('cpu of a replica that requested no cpu is measured against one core', () => {
    const a = { at: 0, cpuSeconds: 0, rssBytes: 0 };
    const b = { at: 2000, cpuSeconds: 3, rssBytes: 0 };
    expect(cpuUtilization(a, b, 0)).toBe(150);
  });

  it('cpu has no value without elapsed time, and a counter that went down reads as no use', () => {
    const a = { at: 1000, cpuSeconds: 5, rssBytes: 0 };
    expect(cpuUtilization(a, { ...a }, 1)).toBeNull();
    expect(cpuUtilization(a, { at: 2000, cpuSeconds: 1, rssBytes: 0 }, 1)).toBe(0);
  });

  it('memory is resident bytes over the requested memory; no request, no limit, no value', () => {
    expect(memoryUtilization(64 * MiB, 256 * MiB)).toBe(25);
    expect(memoryUtilization(300 * MiB, 256 * MiB)).toBeCloseTo(117.1875);
    expect(memoryUtilization(64 * MiB, 0)).toBeNull();
  });
});

describe('resource sampler on a virtual clock', () => {
  it('reads each replica against its own request, over the readings of the window', async () => {
    const { sampler, tick } = await setup({
      a: { cpu: 1, mem: 128 * MiB, gpu: 0 },
      b: { cpu: 2, mem: 0, gpu: 0 },
    });
    await tick(0);
    // One reading each: memory is known, cpu needs a second reading.
    expect(sampler.read('d', ['a', 'b'], 'cpu')).toBeNull();
    expect(sampler.read('d', ['a', 'b'], 'memory')).toEqual(
      new Map([['a', (FAKE_IDLE_RSS_BYTES / (128 * MiB)) * 100]]),
    );
    await tick(1000, { a: 0.5, b: 1 });
    await tick(1000, { a: 0.5, b: 3 });
    // Over 2 s: a used 1 s of 1 core (50 %), b 4 s of 2 cores (100 %).
    expect(sampler.read('d', ['a', 'b'], 'cpu')).toEqual(
      new Map([
        ['a', 50],
        ['b', 100],
      ]),
    );
    expect(sampler.read('d', ['a'], 'cpu')).toEqual(new Map([['a', 50]]));
  });

  it('the cpu window slides: old load leaves the value once it is older than the window', async () => {
    const { sampler, tick } = await setup({ a: { cpu: 1, mem: 0, gpu: 0 } }, 4000);
    await tick(0);
    for (let i = 0; i < 4; i++) await tick(1000, { a: 1 }); // busy: 100 %
    expect(sampler.read('d', ['a'], 'cpu')?.get('a')).toBe(100);
    await tick(1000); // idle second: 4 s window holds 3 busy + 1 idle
    expect(sampler.read('d', ['a'], 'cpu')?.get('a')).toBe(75);
    for (let i = 0; i < 3; i++) await tick(1000);
    expect(sampler.read('d', ['a'], 'cpu')?.get('a')).toBe(0);
  });

  it('a replica that stops running loses its values; a restarted session starts a new series', async () => {
    const { backend, sampler, tick } = await setup({ a: { cpu: 1, mem: 64 * MiB, gpu: 0 } });
    await tick(0);
    await tick(1000, { a: 1 });
    expect(sampler.read('d', ['a'], 'cpu')?.get('a')).toBe(100);
    await backend.stop('a');
    await tick(1000);
    expect(sampler.read('d', ['a'], 'cpu')).toBeNull();
    expect(sampler.read('d', ['a'], 'memory')).toBeNull();
    expect(sampler.latest('a')).toBeUndefined();
    // A new session: its counter starts at 0 again; one reading is not a rate yet.
    await backend.start('a', sessionSpec(['idle'], { resources: { cpu: 1, mem: 0, gpu: 0 } }));
    await tick(1000);
    expect(sampler.read('d', ['a'], 'cpu')).toBeNull();
    await tick(1000, { a: 0.25 });
    expect(sampler.read('d', ['a'], 'cpu')?.get('a')).toBe(25);
  });

  it('values go stale when sampling stops: nothing newer than three intervals, nothing read', async () => {
    const { sampler, tick, clock } = await setup({ a: { cpu: 1, mem: 64 * MiB, gpu: 0 } });
    await tick(0);
    await tick(1000, { a: 1 });
    expect(sampler.read('d', ['a'], 'memory')?.get('a')).toBe(50);
    clock.advance(3000); // three intervals without a pass: still current
    expect(sampler.read('d', ['a'], 'cpu')?.get('a')).toBe(100);
    clock.advance(1);
    expect(sampler.read('d', ['a'], 'memory')).toBeNull();
    expect(sampler.read('d', ['a'], 'cpu')).toBeNull();
  });

  it('by default samples only the replicas read() asked about, until it is not asked for interestMs', async () => {
    const backend = new FakeBackend();
    const spec = sessionSpec(['idle'], { resources: { cpu: 1, mem: 64 * MiB, gpu: 0 } });
    await backend.start('a', spec);
    await backend.start('b', spec);
    const clock = manualClock();
    const sampler = createResourceMetrics({ backend, clock, autoStart: false, interestMs: 5000 });
    await sampler.sample();
    expect(sampler.latest('a')).toBeUndefined();
    expect(sampler.read('d', ['a'], 'memory')).toBeNull(); // first ask: nothing sampled yet
    await sampler.sample();
    expect(sampler.latest('a')).toBeDefined();
    expect(sampler.latest('b')).toBeUndefined();
    expect(sampler.read('d', ['a'], 'memory')?.get('a')).toBe(50);
    clock.advance(5001);
    await sampler.sample();
    expect(sampler.latest('a')).toBeUndefined();
  });

  it('replicas it is not asked about are not reported, unknown ids are skipped', async () => {
    const { sampler, tick } = await setup({
      a: { cpu: 1, mem: 64 * MiB, gpu: 0 },
      b: { cpu: 1, mem: 64 * MiB, gpu: 0 },
    });
    await tick(0);
    expect([...(sampler.read('d', ['b', 'nope'], 'memory')?.keys() ?? [])]).toEqual(['b']);
    expect(sampler.read('d', [], 'memory')).toBeNull();
  });
});
