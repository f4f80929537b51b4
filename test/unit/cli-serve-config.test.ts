/**
 * Every documented knob reachable from `serve` (issue 12 item 5): the health knobs under their
 * documented environment names and as flags, `--capacity` with GPU detection, `--backend`.
 */
import { afterEach, describe, expect, it, vi } from 'vitest';
import { ConfigError } from '../../src/cli/client-config.ts';
import { nodeCapacity, run as serve } from '../../src/cli/commands/serve.ts';
import { parseCapacity, parseServeConfig } from '../../src/cli/commands/serve-config.ts';
import { countGpuLines, detectGpuCount } from '../../src/cli/gpu-count.ts';

afterEach(() => {
  vi.restoreAllMocks();
});

function problems(fn: () => unknown): string[] {
  try {
    fn();
  } catch (err) {
    if (err instanceof ConfigError) return err.lines;
    throw err;
  }
  throw new Error('expected a ConfigError');
}

const GiB = 1024 ** 3;

describe('serve: health knobs', () => {
  it('reads MAX_HEALTH_STALENESS_SEC, ROUTE_HEALTH_TTL_SEC, HEALTH_CHECK_INTERVAL_SEC and EVICTION_INTERVAL_SEC', () => {
    const c = parseServeConfig(
      {},
      {
        MAX_HEALTH_STALENESS_SEC: '30',
        ROUTE_HEALTH_TTL_SEC: '15',
        HEALTH_CHECK_INTERVAL_SEC: '2',
        EVICTION_INTERVAL_SEC: '10',
      },
      '/srv',
    );
    expect(c).toMatchObject({
      maxHealthStalenessS: 30,
      routeHealthTtlS: 15,
      healthIntervalS: 2,
      evictionIntervalS: 10,
    });
  });

  it('takes the same knobs as flags, which win over the environment', () => {
    const c = parseServeConfig(
      { 'max-health-staleness': '40', 'route-health-ttl': '20', 'health-interval': '1' },
      { MAX_HEALTH_STALENESS_SEC: '30', ROUTE_HEALTH_TTL_SEC: '15' },
      '/srv',
    );
    expect(c).toMatchObject({ maxHealthStalenessS: 40, routeHealthTtlS: 20, healthIntervalS: 1 });
  });

  it('reads the autoscaling tick from --scaling-interval / SCALING_INTERVAL_SEC (default 2)', () => {
    expect(parseServeConfig({}, {}, '/srv').scalingIntervalS).toBe(2);
    expect(parseServeConfig({}, { SCALING_INTERVAL_SEC: '5' }, '/srv').scalingIntervalS).toBe(5);
    expect(
      parseServeConfig({ 'scaling-interval': '1' }, { SCALING_INTERVAL_SEC: '5' }, '/srv')
        .scalingIntervalS,
    ).toBe(1);
    expect(problems(() => parseServeConfig({}, { SCALING_INTERVAL_SEC: '0' }))).toEqual([
      expect.stringMatching(/^--scaling-interval \/ SCALING_INTERVAL_SEC: /),
    ]);
  });

  it('leaves staleness and TTL to the runtime defaults when not given', () => {
    const c = parseServeConfig({}, {}, '/srv');
    expect(c.maxHealthStalenessS).toBeUndefined();
    expect(c.routeHealthTtlS).toBeUndefined();
  });

  it('names the flag and the variable of a bad value', () => {
    expect(problems(() => parseServeConfig({}, { ROUTE_HEALTH_TTL_SEC: 'soon' }))).toEqual([
      expect.stringMatching(/^--route-health-ttl \/ ROUTE_HEALTH_TTL_SEC: .*got "soon"$/),
    ]);
  });

  it('--help lists every knob with its unit and environment variable', async () => {
    const log = vi.spyOn(console, 'log').mockImplementation(() => {});
    expect(await serve(['--help'])).toBe(0);
    const help = String(log.mock.calls[0]?.[0]);
    for (const [flag, env] of [
      ['--health-interval <seconds>', 'HEALTH_CHECK_INTERVAL_SEC'],
      ['--eviction-interval <seconds>', 'EVICTION_INTERVAL_SEC'],
      ['--scaling-interval <seconds>', 'SCALING_INTERVAL_SEC'],
      ['--max-health-staleness <seconds>', 'MAX_HEALTH_STALENESS_SEC'],
      ['--route-health-ttl <seconds>', 'ROUTE_HEALTH_TTL_SEC'],
      ['--capacity cpu=N,mem=SIZE,gpu=N', 'FLOTILLA_CAPACITY'],
      ['--backend process|docker', 'FLOTILLA_BACKEND'],
    ]) {
      expect(help).toContain(flag);
      expect(help).toContain(env);
    }
  }, 60_000);
});

describe('serve: --capacity and --backend', () => {
  it('parses cpu=8,mem=32g,gpu=2 into slots (mem in bytes)', () => {
    expect(parseCapacity('cpu=8,mem=32g,gpu=2')).toEqual({ cpu: 8, mem: 32 * GiB, gpu: 2 });
    expect(parseCapacity('gpu=0')).toEqual({ gpu: 0 });
    expect(parseCapacity(' cpu=0.5 , mem=512m ')).toEqual({ cpu: 0.5, mem: 512 * 1024 ** 2 });
  });

  it('refuses unknown slots, negatives, fractional GPUs and repeats', () => {
    expect(parseCapacity('cpus=8')).toMatch(/unknown slot "cpus"/);
    expect(parseCapacity('cpu=-1')).toMatch(/cpu: must be a number ≥ 0/);
    expect(parseCapacity('gpu=1.5')).toMatch(/gpu: must be a whole number/);
    expect(parseCapacity('mem=lots')).toMatch(/mem: expected a size/);
    expect(parseCapacity('cpu=1,cpu=2')).toMatch(/cpu given twice/);
    expect(parseCapacity('')).toMatch(/expected cpu=N/);
  });

  it('reads --capacity and FLOTILLA_CAPACITY, --backend and FLOTILLA_BACKEND', () => {
    expect(
      parseServeConfig({}, { FLOTILLA_CAPACITY: 'cpu=2', FLOTILLA_BACKEND: 'docker' }, '/srv'),
    ).toMatchObject({ capacity: { cpu: 2 }, backend: 'docker' });
    expect(
      parseServeConfig(
        { capacity: 'gpu=1', backend: 'process' },
        { FLOTILLA_CAPACITY: 'cpu=2', FLOTILLA_BACKEND: 'docker' },
        '/srv',
      ),
    ).toMatchObject({ capacity: { gpu: 1 }, backend: 'process' });
    expect(problems(() => parseServeConfig({ capacity: 'cpu=x' }, {}))).toEqual([
      expect.stringMatching(/^--capacity \/ FLOTILLA_CAPACITY: cpu: must be a number ≥ 0/),
    ]);
    expect(problems(() => parseServeConfig({ backend: 'k8s' }, {}))).toEqual([
      expect.stringMatching(/^--backend \/ FLOTILLA_BACKEND: .*got "k8s"$/),
    ]);
  });

  it('flotilla serve --capacity with a bad value exits 2 naming the flag', async () => {
    const err = vi.spyOn(console, 'error').mockImplementation(() => {});
    expect(await serve(['--capacity', 'cpu=two'])).toBe(2);
    expect(String(err.mock.calls[0]?.[0])).toMatch(
      /^flotilla serve: --capacity \/ FLOTILLA_CAPACITY/,
    );
  });

  it('counts GPUs from nvidia-smi -L, and only when --capacity gives no gpu', async () => {
    const listing =
      'GPU 0: NVIDIA A100-SXM4-80GB (UUID: GPU-1)\nGPU 1: NVIDIA A100-SXM4-80GB (UUID: GPU-2)\n';
    expect(countGpuLines(listing)).toBe(2);
    expect(await detectGpuCount(async () => listing)).toBe(2);
    expect(
      await detectGpuCount(async () => {
        throw Object.assign(new Error('spawn nvidia-smi ENOENT'), { code: 'ENOENT' });
      }),
    ).toBeUndefined();
    const detect = vi.fn(async () => 2);
    expect(await nodeCapacity({ cpu: 4 }, detect)).toEqual({ cpu: 4, gpu: 2 });
    expect(await nodeCapacity(undefined, detect)).toEqual({ gpu: 2 });
    expect(await nodeCapacity({ gpu: 0 }, detect)).toEqual({ gpu: 0 });
    expect(detect).toHaveBeenCalledTimes(2);
    expect(await nodeCapacity(undefined, async () => undefined)).toBeUndefined();
  });
});
