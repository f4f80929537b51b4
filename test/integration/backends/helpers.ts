/**
 * Helpers for backend tests with real processes. Every replica command carries a per-file
 * marker in its argv, so `ps` can count exactly the processes a test started.
 */
import { execFileSync } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdtempSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { SessionSpec } from '../../../src/domain/session.ts';
import { DEFAULT_HEALTH_CHECK } from '../../../src/domain/session.ts';
import { waitFor as waitForCondition } from '../../harness/wait.ts';

export const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');

export function newMarker(): string {
  return `flotilla-test-${randomUUID().slice(0, 8)}`;
}

export function tempDir(prefix = 'flotilla-backend-'): string {
  return mkdtempSync(path.join(os.tmpdir(), prefix));
}

export function sessionSpec(command: string[], overrides: Partial<SessionSpec> = {}): SessionSpec {
  return {
    runtime_variant: 'cmd',
    command,
    environ: {},
    port: 8000,
    health: DEFAULT_HEALTH_CHECK,
    resources: { cpu: 0.1, mem: 64 * 1024 * 1024, gpu: 0 },
    ...overrides,
  };
}

/** The echo server through the CLI, run from the repository root like a model folder. */
export function echoSpec(marker: string, overrides: Partial<SessionSpec> = {}): SessionSpec {
  return sessionSpec(
    ['node', 'bin/flotilla.js', 'echo-server', '--port', '{port}', '--model', marker],
    { workdir: REPO_ROOT, ...overrides },
  );
}

/**
 * The real interpreter behind `python3`. A version-manager shim (pyenv) runs short-lived helper
 * processes with the same argv while it starts, which would make exact process counts flaky.
 */
export const PYTHON3 = execFileSync('python3', ['-c', 'import sys; print(sys.executable)'], {
  encoding: 'utf8',
}).trim();

/** `python3 -m http.server {port}`, serving a directory whose name carries the marker. */
export function pythonSpec(
  markerDir: string,
  overrides: Partial<SessionSpec> = {},
  python = PYTHON3,
): SessionSpec {
  return sessionSpec(
    [python, '-m', 'http.server', '{port}', '--bind', '127.0.0.1', '--directory', markerDir],
    overrides,
  );
}

/** A shell script as a replica; the marker is its $0 so it shows in `ps`. */
export function shellSpec(script: string, marker: string, overrides: Partial<SessionSpec> = {}) {
  return sessionSpec(['sh', '-c', script, marker], overrides);
}

/** Live (non-zombie) processes whose command line contains `marker`. */
export function processesWith(marker: string): { pid: number; pgid: number; args: string }[] {
  const out = execFileSync('ps', ['-eo', 'pid=,pgid=,stat=,args='], { encoding: 'utf8' });
  const found: { pid: number; pgid: number; args: string }[] = [];
  for (const line of out.split('\n')) {
    const m = /^\s*(\d+)\s+(\d+)\s+(\S+)\s+(.*)$/.exec(line);
    if (!m || m[3]!.startsWith('Z') || !m[4]!.includes(marker)) continue;
    if (m[4]!.startsWith('ps ')) continue;
    found.push({ pid: Number(m[1]), pgid: Number(m[2]), args: m[4]! });
  }
  return found;
}

/** Last resort so a failed test leaves nothing behind; returns how many it had to kill. */
export function killAllWith(marker: string): number {
  const procs = processesWith(marker);
  for (const p of procs) {
    try {
      process.kill(p.pid, 'SIGKILL');
    } catch {
      // already gone
    }
  }
  return procs.length;
}

/** Polls `probe` until truthy (test/harness/wait.ts, with this folder's argument order). */
export function waitFor<T>(
  what: string,
  probe: () => T | Promise<T>,
  timeoutMs = 30_000,
  intervalMs = 25,
): Promise<NonNullable<T>> {
  return waitForCondition(probe, { timeoutMs, intervalMs, message: what });
}

/** GET url; the status, or 0 when nothing answered. */
export async function httpStatus(url: string, timeoutMs = 2000): Promise<number> {
  try {
    const res = await fetch(url, { signal: AbortSignal.timeout(timeoutMs) });
    await res.arrayBuffer();
    return res.status;
  } catch {
    return 0;
  }
}

/** Alive and not a zombie (a dead process waiting to be reaped is dead to us). */
export function isAlive(pid: number): boolean {
  try {
    const out = execFileSync('ps', ['-o', 'stat=', '-p', String(pid)], { encoding: 'utf8' });
    return out.trim() !== '' && !out.trim().startsWith('Z');
  } catch {
    return false; // ps exits 1 when the pid does not exist
  }
}
