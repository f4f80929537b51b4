/**
 * What the proxy benches (run.ts, profile.ts, syscalls.ts) share: starting the processes under
 * test and stopping them, the fixed-response backends and the routing table that points at them,
 * one wrk run parsed, and CPU time from /proc (utime+stime: load-independent).
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { statFields } from '../../src/backends/proc.ts';

/** A file beside this one. */
export const here = (f: string) => fileURLToPath(new URL(f, import.meta.url));

/** Every process a bench started; `stopChildren` stops the ones still running. */
export const children: ChildProcess[] = [];

export function stopChildren(signal: NodeJS.Signals = 'SIGTERM'): void {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill(signal);
}

export interface Listening {
  port: number;
  pid: number;
  proc: ChildProcess;
}

/**
 * Spawns `cmd` (node by default) and resolves once it prints `LISTENING <port>`; rejects when it
 * exits first or stays silent for a minute. `onLine` sees every stdout line (e.g. --trace-gc).
 */
export function startListening(
  name: string,
  args: string[],
  env: Record<string, string> = {},
  opts: { cmd?: string; onLine?: (line: string) => void } = {},
): Promise<Listening> {
  const proc = spawn(opts.cmd ?? process.execPath, args, {
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  children.push(proc);
  return new Promise((resolve, reject) => {
    let buf = '';
    let port = 0;
    const timer = setTimeout(() => reject(new Error(`${name} did not start`)), 60_000);
    proc.stdout!.on('data', (d: Buffer) => {
      buf += d.toString();
      const lines = buf.split('\n');
      buf = lines.pop()!;
      for (const line of lines) {
        opts.onLine?.(line);
        const m = /LISTENING (\d+)/.exec(line);
        if (m && !port) {
          port = Number(m[1]);
          clearTimeout(timer);
          resolve({ port, pid: proc.pid ?? 0, proc });
        }
      }
    });
    proc.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`${name} exited (${code})`));
    });
  });
}

/** The two fixed-response backends (backend.mjs), replicas r1 and r2. */
export function startBackends(): Promise<Listening[]> {
  return Promise.all(
    ['r1', 'r2'].map((id) =>
      startListening(`backend ${id}`, [here('./backend.mjs')], { REPLICA_ID: id, PORT: '0' }),
    ),
  );
}

/** One deployment `m` (path /m/) round robin over the backends. */
export function benchTable(backends: { port: number }[]) {
  return {
    version: 1,
    deployments: [
      {
        deploymentId: 'bench',
        name: 'm',
        routing: { strategy: 'round_robin', request_timeout_s: 60, retries: 2 },
        routes: backends.map((b, i) => ({
          routeId: `route-r${i + 1}`,
          replicaId: `r${i + 1}`,
          url: `http://127.0.0.1:${b.port}`,
          state: 'HEALTHY',
          weight: 1,
        })),
        // Admission is not under test: room for every wrk connection, like nginx has.
        admission: { max_concurrent_requests: 256, max_queue_size: 1024 },
      },
    ],
    endpoints: [],
  };
}

/**
 * Node arguments and environment that run Flotilla's own proxy (proxy-process.mjs) from
 * `source`: `src` (this checkout's sources, through tsx), `dist` (this checkout's compiled
 * JavaScript, as `serve` runs it; `npm run build` first), or `src:<checkout>` / `dist:<checkout>`
 * for another checkout's.
 */
export function ownProxy(source: string): { args: string[]; env: Record<string, string> } {
  const [kind, checkout] = source.split(/:(.*)/s) as [string, string | undefined];
  const root = checkout ?? here('../..');
  const launcher = here('./proxy-process.mjs');
  if (kind === 'dist') return { args: [launcher], env: { PROXY_SOURCE: `${root}/dist/src` } };
  if (kind === 'src') {
    return { args: ['--import', 'tsx', launcher], env: { PROXY_SOURCE: `${root}/src` } };
  }
  throw new Error(`own proxy source "${source}": expected src, dist, src:<dir> or dist:<dir>`);
}

export interface WrkRun {
  /** wrk's report as printed. */
  out: string;
  rps: number;
  requests: number;
  /** Latency percentiles in ms (NaN without `latency`). */
  p50: number;
  p99: number;
  /** Non-2xx responses and socket errors wrk reported ('' when none). */
  errors: string;
}

function toMs(v: string): number {
  const m = /^([\d.]+)(us|ms|s|m)$/.exec(v.trim());
  if (!m) return Number.NaN;
  const n = Number(m[1]);
  return m[2] === 'us' ? n / 1000 : m[2] === 'ms' ? n : m[2] === 's' ? n * 1000 : n * 60_000;
}

/** One `wrk -t1` run (with `--latency` when asked); rejects when wrk fails. */
export function wrk(
  url: string,
  connections: number,
  seconds: number,
  opts: { latency?: boolean } = {},
): Promise<WrkRun> {
  return new Promise((resolve, reject) => {
    const args = [
      '-t1',
      `-c${connections}`,
      `-d${seconds}s`,
      ...(opts.latency ? ['--latency'] : []),
    ];
    const proc = spawn('wrk', [...args, url], { stdio: ['ignore', 'pipe', 'inherit'] });
    children.push(proc);
    let out = '';
    proc.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
    });
    proc.once('error', reject);
    proc.once('exit', (code) => {
      if (code !== 0) return reject(new Error(`wrk exited ${code}: ${out}`));
      resolve({
        out,
        rps: Number(/Requests\/sec:\s+([\d.]+)/.exec(out)?.[1]),
        requests: Number(/(\d+) requests in/.exec(out)?.[1]),
        p50: toMs(/\s50%\s+(\S+)/.exec(out)?.[1] ?? ''),
        p99: toMs(/\s99%\s+(\S+)/.exec(out)?.[1] ?? ''),
        errors: [/Non-2xx or 3xx responses: \d+/.exec(out)?.[0], /Socket errors: .*/.exec(out)?.[0]]
          .filter(Boolean)
          .join('; '),
      });
    });
  });
}

/** Microseconds in a clock tick of /proc/<pid>/stat (USER_HZ, 100 on Linux). */
export const TICK_US = 10_000;

/** utime+stime of one process in clock ticks; throws when it is gone. */
export function cpuTicks(pid: number): number {
  const fields = statFields(readFileSync(`/proc/${pid}/stat`, 'utf8'));
  if (!fields) throw new Error(`/proc/${pid}/stat: unreadable`);
  // utime is field 14, stime field 15.
  return Number(fields[11]) + Number(fields[12]);
}

/** A process and all its descendants (from /proc). */
function processTree(root: number): number[] {
  const kids = new Map<number, number[]>();
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const ppid = Number(statFields(readFileSync(`/proc/${entry}/stat`, 'utf8'))?.[1]);
      const list = kids.get(ppid) ?? [];
      list.push(Number(entry));
      kids.set(ppid, list);
    } catch {
      // gone meanwhile
    }
  }
  const out = [root];
  for (let i = 0; i < out.length; i++) out.push(...(kids.get(out[i]!) ?? []));
  return out;
}

/** utime+stime of a process tree in clock ticks (members gone meanwhile count nothing). */
export function treeCpuTicks(root: number): number {
  let ticks = 0;
  for (const pid of processTree(root)) {
    try {
      ticks += cpuTicks(pid);
    } catch {
      // gone meanwhile
    }
  }
  return ticks;
}
