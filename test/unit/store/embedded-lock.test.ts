import { type ChildProcess, spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { createEmbeddedExecutor } from '../../../src/store/embedded-executor.ts';
import type { SqlExecutor } from '../../../src/store/sql-executor.ts';

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

function dataDir(): string {
  const dir = mkdtempSync(join(tmpdir(), 'flotilla-lock-'));
  cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
  mkdirSync(dir, { recursive: true });
  return dir;
}

/** An unrelated live process (as after pid reuse), stopped after the test. */
function sleeper(): ChildProcess {
  const child = spawn('sleep', ['60'], { stdio: 'ignore' });
  cleanups.push(() => {
    child.kill('SIGKILL');
  });
  return child;
}

function startTime(pid: number): string {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19] as string;
}

async function open(dir: string): Promise<SqlExecutor> {
  const exec = await createEmbeddedExecutor(dir);
  cleanups.push(() => exec.close());
  return exec;
}

/** A zombie: `sh` forks a short `sleep`, then execs a long one, which never reaps the first. Returns its pid. */
async function zombie(): Promise<number> {
  const parent = spawn('sh', ['-c', 'sleep 0.3 & echo $!; exec sleep 60'], {
    stdio: ['ignore', 'pipe', 'ignore'],
  });
  cleanups.push(() => {
    parent.kill('SIGKILL');
  });
  const pid = await new Promise<number>((resolve) =>
    parent.stdout?.once('data', (b: Buffer) => resolve(Number(String(b).trim()))),
  );
  // Wait (with a deadline) until the child has exited and sits unreaped.
  const until = Date.now() + 5_000;
  for (;;) {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    if (stat.slice(stat.lastIndexOf(')') + 2).startsWith('Z')) return pid;
    if (Date.now() > until) throw new Error(`pid ${pid} did not become a zombie`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe('the embedded database lock', () => {
  it('is taken over when it names a live unrelated process with another start time', async () => {
    const dir = dataDir();
    const other = sleeper();
    writeFileSync(join(dir, 'pgdata.lock'), `${other.pid} 1`);
    const exec = await open(dir);
    expect(await exec.query('SELECT 1 AS n')).toEqual([{ n: 1 }]);
    expect(readFileSync(join(dir, 'pgdata.lock'), 'utf8').split(' ')[0]).toBe(String(process.pid));
  }, 60_000);

  it('is taken over when it names a zombie (a holder killed but not yet reaped)', async () => {
    const dir = dataDir();
    const pid = await zombie();
    writeFileSync(join(dir, 'pgdata.lock'), String(pid));
    const exec = await open(dir);
    expect(await exec.query('SELECT 1 AS n')).toEqual([{ n: 1 }]);
  }, 60_000);

  it('still refuses while the process it names runs with the recorded start time', async () => {
    const dir = dataDir();
    const holder = sleeper();
    const pid = holder.pid as number;
    writeFileSync(join(dir, 'pgdata.lock'), `${pid} ${startTime(pid)}`);
    await expect(createEmbeddedExecutor(dir)).rejects.toThrow(`is in use by process ${pid}`);
  }, 60_000);

  it('still refuses a second opener while this process holds it', async () => {
    const dir = dataDir();
    await open(dir);
    await expect(createEmbeddedExecutor(dir)).rejects.toThrow(
      `is in use by process ${process.pid}`,
    );
  }, 60_000);
});
