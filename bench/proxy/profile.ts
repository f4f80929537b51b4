/**
 * CPU profile of Flotilla's own proxy under wrk (not a test): `npx tsx bench/proxy/profile.ts`.
 * Starts two fixed-response backends and the proxy with `--cpu-prof`, drives it with wrk
 * (PROFILE_CONNECTIONS, default 16; PROFILE_SECONDS, default 8), stops it, and prints the
 * functions and files with the most self time. The .cpuprofile is kept (its path is printed)
 * for a flame graph in Chrome DevTools or speedscope.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const CONNECTIONS = Number(process.env.PROFILE_CONNECTIONS ?? 16);
const SECONDS = Number(process.env.PROFILE_SECONDS ?? 8);
const here = (f: string) => fileURLToPath(new URL(f, import.meta.url));
const children: ChildProcess[] = [];
process.on('exit', () => {
  for (const c of children) if (c.exitCode === null) c.kill('SIGKILL');
});

function start(
  args: string[],
  env: Record<string, string>,
): Promise<{ port: number; proc: ChildProcess }> {
  const proc = spawn(process.execPath, args, {
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  children.push(proc);
  return new Promise((resolve, reject) => {
    let buf = '';
    proc.stdout!.on('data', (d: Buffer) => {
      buf += d.toString();
      const m = /LISTENING (\d+)/.exec(buf);
      if (m) resolve({ port: Number(m[1]), proc });
    });
    proc.once('exit', (code) => reject(new Error(`${args.join(' ')} exited ${code}`)));
  });
}

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  hitCount?: number;
}

async function main(): Promise<void> {
  const backends = await Promise.all(
    ['r1', 'r2'].map((id) => start([here('./backend.mjs')], { REPLICA_ID: id, PORT: '0' })),
  );
  const table = {
    version: 1,
    endpoints: [],
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
        admission: { max_concurrent_requests: 256, max_queue_size: 1024 },
      },
    ],
  };
  const dir = mkdtempSync(join(tmpdir(), 'flotilla-proxy-prof-'));
  const proxy = await start(
    ['--cpu-prof', `--cpu-prof-dir=${dir}`, '--import', 'tsx', here('./proxy-process.ts')],
    {
      BENCH_TABLE: JSON.stringify(table),
    },
  );
  const url = `http://127.0.0.1:${proxy.port}/m/x`;
  const wrk = spawn('wrk', ['-t1', `-c${CONNECTIONS}`, `-d${SECONDS}s`, url], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  let out = '';
  wrk.stdout!.on('data', (d: Buffer) => {
    out += d.toString();
  });
  await new Promise((r) => wrk.once('exit', r));
  console.log(/Requests\/sec:.*/.exec(out)?.[0] ?? out);
  const exited = new Promise((r) => proxy.proc.once('exit', r));
  proxy.proc.kill('SIGTERM');
  await exited;
  const file = readdirSync(dir).find((f) => f.endsWith('.cpuprofile'));
  if (!file) throw new Error(`no profile in ${dir}`);
  const profile = JSON.parse(readFileSync(join(dir, file), 'utf8')) as { nodes: ProfileNode[] };
  const total = profile.nodes.reduce((n, x) => n + (x.hitCount ?? 0), 0);
  const byFn = new Map<string, number>();
  const byFile = new Map<string, number>();
  for (const n of profile.nodes) {
    const hits = n.hitCount ?? 0;
    if (!hits) continue;
    const f = n.callFrame;
    const where = f.url
      .replace(/^file:\/\//, '')
      .replace(/^.*\/node_modules\//, 'node_modules/')
      .replace(process.cwd(), '.');
    const key = `${f.functionName || '(anonymous)'}  ${where}:${f.lineNumber + 1}`;
    byFn.set(key, (byFn.get(key) ?? 0) + hits);
    const group =
      where === ''
        ? f.functionName
        : where.startsWith('node:')
          ? where
          : where.replace(/^(node_modules\/[^/]+).*/, '$1');
    byFile.set(group, (byFile.get(group) ?? 0) + hits);
  }
  const top = (m: Map<string, number>, n: number) =>
    [...m]
      .sort((a, b) => b[1] - a[1])
      .slice(0, n)
      .map(([k, v]) => `  ${((100 * v) / total).toFixed(1).padStart(5)}%  ${k}`)
      .join('\n');
  console.log(`\nself time by function (top 25 of ${total} samples):\n${top(byFn, 25)}`);
  console.log(`\nself time by file or module (top 15):\n${top(byFile, 15)}`);
  console.log(`\nprofile: ${join(dir, file)}`);
}

main().catch((err) => {
  console.error(err);
  process.exitCode = 1;
});
