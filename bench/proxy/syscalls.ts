/**
 * Load-independent cost of the own proxy against the bare node:http+undici reference (not a
 * test): `npx tsx bench/proxy/syscalls.ts`. Starts two fixed-response backends, the bare
 * proxy and Flotilla's own proxy (one process each), then per target and connection count:
 *   - syscalls per request: `strace -f -c -p <pid>` attached for one wrk run (strace slows the
 *     target, so its throughput is meaningless, but the counts per request are not);
 *   - CPU per request: utime+stime from /proc/<pid>/stat over a separate wrk run, divided by
 *     the requests wrk counted. The targets are driven at the same time (one wrk each), so the
 *     load of a shared machine falls on all of them alike; the paired ratio is printed.
 * Needs strace and ptrace rights (root, or ptrace_scope 0). Everything it starts it stops.
 * Env: SYSCALL_SECONDS (default 3), SYSCALL_CONNECTIONS (default "16,64"), SYSCALL_ROUNDS (3,
 * medians of the CPU figure), SYSCALL_TARGETS (default "bare,own"; `own:<checkout>` runs another
 * checkout's proxy, e.g. own:/work/main for a before/after in one run), SYSCALL_STRACE=0 skips
 * strace. Targets run with --trace-gc: bytes allocated and collections per request are printed.
 */
import { spawn } from 'node:child_process';
import {
  benchTable,
  children,
  cpuTicks,
  here,
  ownProxy,
  startBackends,
  startListening,
  stopChildren,
  TICK_US,
  wrk as wrkRun,
} from './measure.ts';

const SECONDS = Number(process.env.SYSCALL_SECONDS ?? 3);
const CONNECTIONS = (process.env.SYSCALL_CONNECTIONS ?? '16,64').split(',').map(Number);
const ROUNDS = Math.max(1, Number(process.env.SYSCALL_ROUNDS ?? 3));
const TARGETS = (process.env.SYSCALL_TARGETS ?? 'bare,own').split(',');
process.on('exit', () => stopChildren('SIGKILL'));

/** Garbage collections seen in a target's `--trace-gc` output. */
interface GcStats {
  scavenges: number;
  markCompacts: number;
  /** Heap growth between collections summed: MB allocated. */
  allocatedMb: number;
  last: number;
}

interface Target {
  port: number;
  pid: number;
  gc: GcStats;
}

/** A target started with --trace-gc, its collections counted from its stdout. */
async function start(name: string, args: string[], env: Record<string, string>): Promise<Target> {
  const gc: GcStats = { scavenges: 0, markCompacts: 0, allocatedMb: 0, last: Number.NaN };
  const onLine = (line: string) => {
    const m = /(Scavenge|Mark-Compact|Mark-sweep)\S*\s+([\d.]+) \(([\d.]+)\) -> ([\d.]+)/.exec(
      line,
    );
    if (!m) return;
    if (m[1] === 'Scavenge') gc.scavenges++;
    else gc.markCompacts++;
    const before = Number(m[2]);
    if (Number.isFinite(gc.last)) gc.allocatedMb += Math.max(0, before - gc.last);
    gc.last = Number(m[4]);
  };
  const { port, pid } = await startListening(name, ['--trace-gc', ...args], env, { onLine });
  return { port, pid, gc };
}

/** One wrk run: the requests it counted; throws on non-2xx answers. */
async function wrk(url: string, connections: number, seconds: number): Promise<number> {
  const { out, requests } = await wrkRun(url, connections, seconds);
  if (/Non-2xx/.test(out)) throw new Error(`errors from ${url}: ${out}`);
  return requests;
}

/** strace -c attached during one wrk run: calls per syscall name, and the request count. */
async function syscalls(
  pid: number,
  url: string,
  connections: number,
): Promise<{ requests: number; calls: Map<string, number> }> {
  const strace = spawn('strace', ['-f', '-c', '-p', String(pid)], {
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  children.push(strace);
  let report = '';
  strace.stderr!.on('data', (d: Buffer) => {
    report += d.toString();
  });
  // strace prints "Process N attached" once it holds the threads.
  const until = Date.now() + 5000;
  while (!/attached/.test(report) && Date.now() < until)
    await new Promise((r) => setTimeout(r, 20));
  await new Promise((r) => setTimeout(r, 200));
  const requests = await wrk(url, connections, SECONDS);
  const exited = new Promise((r) => strace.once('exit', r));
  strace.kill('SIGINT');
  await exited;
  const calls = new Map<string, number>();
  for (const line of report.split('\n')) {
    const m = /^\s*[\d.]+\s+[\d.]+\s+\d+\s+(\d+)\s+(?:\d+\s+)?(\w+)\s*$/.exec(line);
    if (m && m[2] !== 'total') calls.set(m[2]!, Number(m[1]));
  }
  return { requests, calls };
}

async function main(): Promise<void> {
  const backends = await startBackends();
  const table = benchTable(backends);
  const targets: Record<string, Target> = {};
  for (const name of TARGETS) {
    // `own`: this checkout's proxy through tsx; `own:<dir>`: another checkout's (e.g. main);
    // `js` and `js:<dir>`: the same from compiled dist/ (`npm run build`), as `serve` runs it.
    const [kind, dir] = name.split(/:(.*)/s) as [string, string | undefined];
    if (kind === 'bare') {
      targets[name] = await start(name, [here('./bare-proxy.mjs')], {
        UPSTREAMS: backends.map((b) => `http://127.0.0.1:${b.port}`).join(','),
      });
      continue;
    }
    const source = `${kind === 'js' ? 'dist' : 'src'}${dir ? `:${dir}` : ''}`;
    const own = ownProxy(source);
    targets[name] = await start(name, own.args, { ...own.env, BENCH_TABLE: JSON.stringify(table) });
  }
  const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
  const interesting = [
    'writev',
    'write',
    'read',
    'epoll_wait',
    'epoll_ctl',
    'futex',
    'mmap',
    'munmap',
    'madvise',
    'mprotect',
  ];
  for (const c of CONNECTIONS) {
    console.log(`\nc=${c}`);
    const cpu: Record<string, number[]> = {};
    const rps: Record<string, number[]> = {};
    const gcTotals: Record<
      string,
      { requests: number; scavenges: number; markCompacts: number; allocatedMb: number }
    > = {};
    // Warm-up (JIT, pools): a few seconds each.
    for (const t of Object.values(targets)) await wrk(`http://127.0.0.1:${t.port}/m/x`, c, 3);
    for (let round = 0; round < ROUNDS; round++) {
      // Paired: every target is driven at the same time, so a loaded machine's noise hits all
      // alike; each process's CPU is divided by its own request count.
      const entries = Object.entries(targets);
      const gcBefore = entries.map(([, t]) => ({ ...t.gc }));
      const before = entries.map(([, t]) => cpuTicks(t.pid));
      const counts = await Promise.all(
        entries.map(([, t]) => wrk(`http://127.0.0.1:${t.port}/m/x`, c, SECONDS)),
      );
      entries.forEach(([name, t], i) => {
        cpu[name] = [...(cpu[name] ?? []), ((cpuTicks(t.pid) - before[i]!) * TICK_US) / counts[i]!];
        rps[name] = [...(rps[name] ?? []), counts[i]! / SECONDS];
        const g = gcTotals[name] ?? { requests: 0, scavenges: 0, markCompacts: 0, allocatedMb: 0 };
        g.requests += counts[i]!;
        g.scavenges += t.gc.scavenges - gcBefore[i]!.scavenges;
        g.markCompacts += t.gc.markCompacts - gcBefore[i]!.markCompacts;
        g.allocatedMb += t.gc.allocatedMb - gcBefore[i]!.allocatedMb;
        gcTotals[name] = g;
      });
    }
    const [first, ...rest] = Object.keys(targets) as [string, ...string[]];
    for (const a of rest) {
      const ratios = cpu[a]!.map((x, i) => x / cpu[first]![i]!);
      console.log(
        `  paired CPU ratio ${a}/${first}: median ${median(ratios).toFixed(3)} [${ratios.map((x) => x.toFixed(3)).join(', ')}]`,
      );
    }
    for (const [name, g] of Object.entries(gcTotals)) {
      console.log(
        `  ${name.padEnd(5)} gc: ${((1e6 * g.allocatedMb) / g.requests).toFixed(0)} bytes allocated/req, ${((1000 * g.scavenges) / g.requests).toFixed(2)} scavenges and ${((1000 * g.markCompacts) / g.requests).toFixed(3)} mark-compacts per 1000 req`,
      );
    }
    for (const [name, t] of Object.entries(targets)) {
      if (process.env.SYSCALL_STRACE === '0') break;
      const url = `http://127.0.0.1:${t.port}/m/x`;
      const { requests, calls } = await syscalls(t.pid, url, c);
      let total = 0;
      for (const v of calls.values()) total += v;
      const per = (k: string) => ((calls.get(k) ?? 0) / requests).toFixed(3);
      console.log(
        `  ${name.padEnd(5)} cpu ${median(cpu[name]!).toFixed(1)} µs/req [${cpu[name]!.map((x) => x.toFixed(1)).join(', ')}] at ${median(rps[name]!).toFixed(0)} req/s (paired)  syscalls/req ${(total / requests).toFixed(3)} (${requests} req under strace): ${interesting
          .filter((k) => calls.has(k))
          .map((k) => `${k} ${per(k)}`)
          .join(', ')}`,
      );
      const others = [...calls]
        .filter(([k]) => !interesting.includes(k))
        .sort((a, b) => b[1] - a[1])
        .slice(0, 6)
        .map(([k, v]) => `${k} ${(v / requests).toFixed(3)}`);
      if (others.length) console.log(`        other: ${others.join(', ')}`);
    }
  }
}

main()
  .catch((err) => {
    console.error(err);
    process.exitCode = 1;
  })
  .finally(() => stopChildren());
