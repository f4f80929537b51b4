/**
 * `flotilla serve` processes (compiled: bin/flotilla.js over dist/), started and killed by the
 * suite. Every process, and every replica it starts, carries FAULTS_RUN=<run id> in its
 * environment, so the suite finds its own processes in /proc and nobody else's.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { closeSync, mkdirSync, openSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { isAlive, waitGone } from './services.ts';

export const REPO = resolve(import.meta.dirname, '../..');

export type Role = 'all' | 'coordinator' | 'proxy' | 'prober';

export interface ServeSpec {
  role: Role;
  label: string;
  apiPort: number;
  proxyPort: number;
  dataDir: string;
  runId: string;
  logDir: string;
  env: Record<string, string>;
  extra?: string[];
}

export interface Line {
  at: number;
  text: string;
}

/** One serve process; `start()` may be called again after it died (same ports, same data). */
export class ServeProcess {
  child: ChildProcess | null = null;
  lines: Line[] = [];
  starts = 0;
  private exitWaiters: Array<() => void> = [];
  exitCode: number | null = null;
  exitSignal: string | null = null;
  /** Every exit of every start, in order (a supervisor may start it again at once). */
  readonly exits: Array<{ code: number | null; signal: string | null; at: number }> = [];

  constructor(readonly spec: ServeSpec) {}

  get pid(): number | undefined {
    return this.child?.pid;
  }

  get alive(): boolean {
    return this.child !== null && this.child.exitCode === null && this.child.signalCode === null;
  }

  get stderrFile(): string {
    return join(this.spec.logDir, `${this.spec.label}.stderr.log`);
  }

  /** Spawns the process; resolves once a stdout line matches `ready` (default: its listeners). */
  async start(ready?: (l: string) => boolean, timeoutMs = 180_000): Promise<number> {
    const s = this.spec;
    mkdirSync(s.logDir, { recursive: true });
    const err = openSync(this.stderrFile, 'a');
    const t0 = performance.now();
    this.lines = [];
    this.exitCode = null;
    this.exitSignal = null;
    const child = spawn(
      process.execPath,
      [
        'bin/flotilla.js',
        'serve',
        ...(s.role === 'all' ? [] : ['--role', s.role]),
        '--api-port',
        String(s.apiPort),
        '--proxy-port',
        String(s.proxyPort),
        '--data-dir',
        s.dataDir,
        '--model-root',
        REPO,
        '--capacity',
        'cpu=64,mem=64g,gpu=0',
        ...(s.extra ?? []),
      ],
      {
        cwd: REPO,
        env: { ...process.env, FLOTILLA_API_TOKEN: '', FAULTS_RUN: s.runId, ...s.env },
        stdio: ['ignore', 'pipe', err],
      },
    );
    closeSync(err);
    this.child = child;
    this.starts++;
    let buf = '';
    child.stdout!.on('data', (d) => {
      buf += d;
      const parts = buf.split('\n');
      buf = parts.pop() ?? '';
      for (const text of parts) this.lines.push({ at: performance.now(), text });
    });
    child.once('exit', (code, signal) => {
      this.exitCode = code;
      this.exitSignal = signal;
      this.exits.push({ code, signal, at: Date.now() });
      for (const w of this.exitWaiters.splice(0)) w();
    });
    const want =
      ready ??
      ((l: string) =>
        s.role === 'proxy'
          ? l.startsWith('proxy ')
          : s.role === 'prober'
            ? l.startsWith('prober ')
            : l.startsWith('api '));
    const until = performance.now() + timeoutMs;
    for (;;) {
      if (this.lines.some((l) => want(l.text))) return performance.now() - t0;
      if (!this.alive) {
        throw new Error(
          `${s.label} exited (${this.exitCode ?? this.exitSignal}) before it was ready; stderr: ${this.stderrTail()}`,
        );
      }
      if (performance.now() > until) {
        throw new Error(
          `${s.label} not ready within ${timeoutMs} ms; stderr: ${this.stderrTail()}`,
        );
      }
      await new Promise((r) => setTimeout(r, 20));
    }
  }

  /** Resolves when the process has exited (at once if it is not running). */
  exited(): Promise<void> {
    if (!this.alive) return Promise.resolve();
    return new Promise((r) => this.exitWaiters.push(r));
  }

  signal(sig: NodeJS.Signals): void {
    if (this.alive) this.child!.kill(sig);
  }

  /** kill -9 and wait until it is gone. */
  async kill9(): Promise<void> {
    const pid = this.pid;
    this.signal('SIGKILL');
    await this.exited();
    if (pid) await waitGone(pid, 5_000);
  }

  /** SIGTERM, then SIGKILL after `graceMs`. */
  async stop(graceMs = 15_000): Promise<void> {
    if (!this.alive) return;
    this.signal('SIGCONT');
    this.signal('SIGTERM');
    const t = setTimeout(() => this.signal('SIGKILL'), graceMs);
    await this.exited();
    clearTimeout(t);
  }

  stderrTail(n = 3000): string {
    try {
      return readFileSync(this.stderrFile, 'utf8').slice(-n);
    } catch {
      return '';
    }
  }

  /** The JSON log lines (stderr) with a given msg. */
  logLines(msg: string): Array<Record<string, unknown>> {
    let text = '';
    try {
      text = readFileSync(this.stderrFile, 'utf8');
    } catch {
      return [];
    }
    const out: Array<Record<string, unknown>> = [];
    for (const l of text.split('\n')) {
      if (!l.includes(msg)) continue;
      try {
        const o = JSON.parse(l) as Record<string, unknown>;
        if (o.msg === msg) out.push(o);
      } catch {
        // not JSON (the process was killed mid-line)
      }
    }
    return out;
  }
}

export interface ReplicaProc {
  pid: number;
  replicaId: string;
  stat: string;
}

/** Live replica processes of this run (FLOTILLA_REPLICA_ID set, FAULTS_RUN=runId). */
export function runReplicaProcesses(runId: string): ReplicaProc[] {
  const out: ReplicaProc[] = [];
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    let env: string;
    let stat: string;
    try {
      env = readFileSync(`/proc/${name}/environ`, 'utf8');
      stat = readFileSync(`/proc/${name}/stat`, 'utf8');
    } catch {
      continue;
    }
    if (!env.includes(`FAULTS_RUN=${runId}\0`)) continue;
    const state = stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
    if (state === 'Z') continue;
    const id = env
      .split('\0')
      .find((e) => e.startsWith('FLOTILLA_REPLICA_ID='))
      ?.slice('FLOTILLA_REPLICA_ID='.length);
    if (id) out.push({ pid: Number(name), replicaId: id, stat: state });
  }
  return out;
}

/** Every process of this run still alive (serve processes and replicas). */
export function runProcesses(runId: string): number[] {
  const out: number[] = [];
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name) || Number(name) === process.pid) continue;
    try {
      const env = readFileSync(`/proc/${name}/environ`, 'utf8');
      if (env.includes(`FAULTS_RUN=${runId}\0`) && isAlive(Number(name))) out.push(Number(name));
    } catch {
      // gone
    }
  }
  return out;
}

/** SIGKILLs the processes of every run whose id contains `part`. */
export async function killRunsMatching(part: string): Promise<void> {
  const ids = new Set<string>();
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const env = readFileSync(`/proc/${name}/environ`, 'utf8');
      const id = env
        .split('\0')
        .find((e) => e.startsWith('FAULTS_RUN='))
        ?.slice('FAULTS_RUN='.length);
      if (id?.includes(part)) ids.add(id);
    } catch {
      // gone, or not ours to read
    }
  }
  for (const id of ids) await killRun(id);
}

/** SIGKILLs every process of this run (the end of a scenario; nothing is left behind). */
export async function killRun(runId: string): Promise<void> {
  for (let i = 0; i < 3; i++) {
    const pids = runProcesses(runId);
    if (pids.length === 0) return;
    for (const pid of pids) {
      try {
        process.kill(pid, 'SIGCONT');
        process.kill(pid, 'SIGKILL');
      } catch {
        // gone
      }
    }
    await Promise.all(pids.map((p) => waitGone(p, 5_000)));
  }
}

/**
 * How many times each replica id was started, from the process backend's log lines
 * ("[flotilla] <time> starting replica <id> on port <n>") in `<dataDir>/replicas/<id>/output.log`.
 */
export function replicaStarts(
  dataDirs: readonly string[],
  /** Only replicas whose log changed at or after this time (epoch ms): an incremental check. */
  since = 0,
): Map<string, number> {
  const out = new Map<string, number>();
  for (const dataDir of dataDirs) {
    const dir = join(dataDir, 'replicas');
    let ids: string[] = [];
    try {
      ids = readdirSync(dir);
    } catch {
      continue;
    }
    for (const id of ids) {
      if (since > 0) {
        let changed = 0;
        for (const file of ['output.log', 'output.log.1']) {
          try {
            changed = Math.max(changed, statSync(join(dir, id, file)).mtimeMs);
          } catch {
            // not there
          }
        }
        if (changed < since) continue;
      }
      for (const file of ['output.log', 'output.log.1']) {
        let text = '';
        try {
          text = readFileSync(join(dir, id, file), 'utf8');
        } catch {
          continue;
        }
        const n = text.split('\n').filter((l) => l.includes(`starting replica ${id} `)).length;
        out.set(id, (out.get(id) ?? 0) + n);
      }
    }
  }
  return out;
}
