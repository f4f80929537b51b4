/**
 * The Docker backend's reading of the Engine API's container stats (usageFromStats): CPU
 * seconds from the cgroup's total usage, memory as `docker stats` shows it (usage minus the
 * inactive page cache, named differently on cgroup v1 and v2). The live engine path is in the
 * backend conformance suite (test/integration/backends/backend-conformance.test.ts).
 */
import { describe, expect, it } from 'vitest';
import { usageFromStats } from '../../../src/backends/docker-backend.ts';

const MiB = 1024 * 1024;

describe('Docker usage from engine stats', () => {
  it('reads CPU nanoseconds as seconds', () => {
    expect(
      usageFromStats({
        cpu_stats: { cpu_usage: { total_usage: 2_500_000_000 } },
        memory_stats: { usage: 10 * MiB, stats: {} },
      }),
    ).toEqual({ cpuSeconds: 2.5, rssBytes: 10 * MiB });
  });

  it('subtracts the inactive page cache: total_inactive_file on cgroup v1, inactive_file on v2', () => {
    const v1 = usageFromStats({
      cpu_stats: { cpu_usage: { total_usage: 0 } },
      memory_stats: { usage: 100 * MiB, stats: { total_inactive_file: 30 * MiB } },
    });
    const v2 = usageFromStats({
      cpu_stats: { cpu_usage: { total_usage: 0 } },
      memory_stats: { usage: 100 * MiB, stats: { inactive_file: 40 * MiB } },
    });
    expect(v1?.rssBytes).toBe(70 * MiB);
    expect(v2?.rssBytes).toBe(60 * MiB);
  });

  it('has no reading for a stopped container (the engine sends no usage)', () => {
    expect(usageFromStats({ cpu_stats: { cpu_usage: {} }, memory_stats: {} })).toBeNull();
    expect(usageFromStats({})).toBeNull();
  });
});
