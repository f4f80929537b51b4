/**
 * CPU profile of Flotilla's own proxy under wrk (not a test): `npx tsx bench/proxy/profile.ts`.
 * Starts two fixed-response backends and the proxy with `--cpu-prof`, drives it with wrk
 * (PROFILE_CONNECTIONS, default 16; PROFILE_WARMUP_SECONDS, default 3, then PROFILE_SECONDS,
 * default 8, measured), stops it, and prints the functions and files with the most self time
 * in the measured window, as CPU µs per request: the process's utime+stime from /proc (load-
 * independent) shared out by the profile's non-idle samples. The .cpuprofile is kept (its
 * path is printed) for a flame graph in Chrome DevTools or speedscope. PROFILE_TARGET=bare
 * profiles the bare node:http+undici reference (bare-proxy.mjs) instead; PROFILE_TARGET=both
 * profiles both and prints what the own proxy adds, by file or module.
 */
import { mkdtempSync, readdirSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  benchTable,
  cpuTicks,
  here,
  ownProxy,
  startBackends,
  startListening,
  stopChildren,
  TICK_US,
  wrk,
} from './measure.ts';

const CONNECTIONS = Number(process.env.PROFILE_CONNECTIONS ?? 16);
const SECONDS = Number(process.env.PROFILE_SECONDS ?? 8);
const WARMUP = Number(process.env.PROFILE_WARMUP_SECONDS ?? 3);
process.on('exit', () => stopChildren('SIGKILL'));

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  hitCount?: number;
}

interface Profile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
  startTime: number;
}

/** utime+stime of a process, microseconds. */
const cpuUs = (pid: number) => cpuTicks(pid) * TICK_US;

/** One wrk run at PROFILE_CONNECTIONS; prints its Requests/sec line, returns the requests. */
async function drive(url: string, seconds: number): Promise<number> {
  const { out, requests } = await wrk(url, CONNECTIONS, seconds);
  console.log(`  ${/Requests\/sec:.*/.exec(out)?.[0] ?? out}`);
  return requests;
}

/** Self time per function and per file, in CPU µs per request, over the measured window. */
interface Breakdown {
  requests: number;
  cpuUsPerReq: number;
  byFn: Map<string, number>;
  byFile: Map<string, number>;
  file: string;
}

async function profileOne(
  target: 'own' | 'bare',
  backends: { port: number }[],
  table: unknown,
): Promise<Breakdown> {
  const dir = mkdtempSync(join(tmpdir(), 'flotilla-proxy-prof-'));
  const prof = ['--cpu-prof', `--cpu-prof-dir=${dir}`];
  const own = ownProxy('src');
  const proxy =
    target === 'bare'
      ? await startListening('bare proxy', [...prof, here('./bare-proxy.mjs')], {
          UPSTREAMS: backends.map((b) => `http://127.0.0.1:${b.port}`).join(','),
        })
      : await startListening('own proxy', [...prof, ...own.args], {
          ...own.env,
          BENCH_TABLE: JSON.stringify(table),
        });
  const url = `http://127.0.0.1:${proxy.port}/m/x`;
  console.log(
    `${target}: warm-up ${WARMUP}s, then ${SECONDS}s measured, ${CONNECTIONS} connections`,
  );
  if (WARMUP > 0) await drive(url, WARMUP);
  const pid = proxy.proc.pid!;
  const cpu0 = cpuUs(pid);
  // Same clock as the profile's timestamps (CLOCK_MONOTONIC, µs).
  const t0 = Number(process.hrtime.bigint() / 1000n);
  const requests = await drive(url, SECONDS);
  const t1 = Number(process.hrtime.bigint() / 1000n);
  const cpu = cpuUs(pid) - cpu0;
  const exited = new Promise((r) => proxy.proc.once('exit', r));
  proxy.proc.kill('SIGTERM');
  await exited;
  const file = readdirSync(dir).find((f) => f.endsWith('.cpuprofile'));
  if (!file) throw new Error(`no profile in ${dir}`);
  const profile = JSON.parse(readFileSync(join(dir, file), 'utf8')) as Profile;
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  // Non-idle samples in the window, by node.
  const hits = new Map<number, number>();
  let t = profile.startTime;
  let busy = 0;
  for (let i = 0; i < profile.samples.length; i++) {
    t += profile.timeDeltas[i]!;
    if (t < t0 || t > t1) continue;
    const node = byId.get(profile.samples[i]!)!;
    if (node.callFrame.functionName === '(idle)') continue;
    hits.set(node.id, (hits.get(node.id) ?? 0) + 1);
    busy++;
  }
  // The process's CPU time (from /proc: load-independent) shared out by sample counts.
  const perHit = cpu / Math.max(1, busy) / Math.max(1, requests);
  const byFn = new Map<string, number>();
  const byFile = new Map<string, number>();
  for (const [id, n] of hits) {
    const f = byId.get(id)!.callFrame;
    const where = f.url
      .replace(/^file:\/\//, '')
      .replace(/^.*\/node_modules\//, 'node_modules/')
      .replace(process.cwd(), '.');
    const key = `${f.functionName || '(anonymous)'}  ${where}:${f.lineNumber + 1}`;
    byFn.set(key, (byFn.get(key) ?? 0) + n * perHit);
    const group =
      where === ''
        ? f.functionName
        : where.startsWith('node:')
          ? where
          : where.replace(/^(node_modules\/[^/]+).*/, '$1');
    byFile.set(group, (byFile.get(group) ?? 0) + n * perHit);
  }
  return { requests, cpuUsPerReq: cpu / requests, byFn, byFile, file: join(dir, file) };
}

const top = (m: Map<string, number>, n: number, total: number) =>
  [...m]
    .sort((a, b) => b[1] - a[1])
    .slice(0, n)
    .map(
      ([k, v]) =>
        `  ${v.toFixed(2).padStart(6)} µs/req ${((100 * v) / total).toFixed(1).padStart(5)}%  ${k}`,
    )
    .join('\n');

async function main(): Promise<void> {
  const backends = await startBackends();
  const table = benchTable(backends);
  const which = (process.env.PROFILE_TARGET ?? 'own') as 'own' | 'bare' | 'both';
  const results: Partial<Record<'own' | 'bare', Breakdown>> = {};
  for (const target of which === 'both' ? (['bare', 'own'] as const) : [which]) {
    const r = await profileOne(target, backends, table);
    results[target] = r;
    console.log(
      `\n${target}: ${r.cpuUsPerReq.toFixed(1)} CPU µs/request (/proc utime+stime over ${r.requests} requests), self time by function:\n${top(r.byFn, 30, r.cpuUsPerReq)}`,
    );
    console.log(`\n${target}: self time by file or module:\n${top(r.byFile, 15, r.cpuUsPerReq)}`);
    console.log(`\nprofile: ${r.file}\n`);
  }
  const { own, bare } = results;
  if (own && bare) {
    const diff = new Map<string, number>();
    for (const k of new Set([...own.byFile.keys(), ...bare.byFile.keys()]))
      diff.set(k, (own.byFile.get(k) ?? 0) - (bare.byFile.get(k) ?? 0));
    console.log(
      `own − bare: ${(own.cpuUsPerReq - bare.cpuUsPerReq).toFixed(1)} µs/request (own ${own.cpuUsPerReq.toFixed(1)}, bare ${bare.cpuUsPerReq.toFixed(1)}); by file or module, largest first:`,
    );
    console.log(
      [...diff]
        .sort((a, b) => b[1] - a[1])
        .slice(0, 15)
        .map(([k, v]) => `  ${(v >= 0 ? '+' : '') + v.toFixed(2)} µs/req  ${k}`)
        .join('\n'),
    );
  }
}

main()
  .catch((err) => {
    console.error(err);
    process.exitCode = 1;
  })
  // The backends would keep this process alive: stop everything once the report is out.
  .finally(() => stopChildren());
