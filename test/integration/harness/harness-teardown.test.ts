/**
 * The harness leaves nothing behind (issue 12 item 8): stopping the services it spawned ends
 * every one of their processes, the PostgreSQL server included (as root it runs under
 * `runuser`, which ignores the SIGINT that used to be its only stop signal).
 */
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { harnessProcessesAlive, startServices } from '../../harness/services.ts';

function running(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
}

describe('test harness services', () => {
  it('stopping the spawned services leaves no process alive, the PostgreSQL server included', async () => {
    const before = new Set(harnessProcessesAlive());
    // An empty environment: every service is spawned here, none taken from the run's own.
    const { urls, stop } = await startServices({});
    const ours = harnessProcessesAlive().filter((p) => !before.has(p));
    expect(urls.sources.postgres).toMatch(/^ephemeral/);
    expect(ours.some((p) => p.startsWith('postgres server on '))).toBe(true);
    const pids = ours.map((p) => Number(/\(pid (\d+)\)$/.exec(p)?.[1]));
    expect(pids.every((pid) => running(pid))).toBe(true);
    await stop();
    expect(pids.filter((pid) => running(pid))).toEqual([]);
    expect(harnessProcessesAlive().filter((p) => !before.has(p))).toEqual([]);
  }, 90_000);
});
