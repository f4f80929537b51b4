/**
 * bench/startup: what it costs to start Flotilla, the compiled bin (bin/flotilla.js running
 * dist/) against the baseline measured in the same run: the same CLI run through tsx
 * (bench/startup/tsx-bin.mjs, which is what bin/flotilla.js did before dist/), with tsx's
 * transform cache warm and cold (an empty TMPDIR: the first run of a fresh clone).
 *
 *   - `serve` start: spawn to both listeners printed (`api URL` and `proxy URL` on stdout),
 *     embedded defaults (PGlite) on a fresh data dir each round;
 *   - echo-server start: spawn to "echo-server listening";
 *   - RSS of one echo replica: the whole process tree (node plus esbuild's service process
 *     under tsx) after the server answered one request, and the number of processes.
 *
 *   npm run bench:startup              (needs `npm run build` first)
 *   ROUNDS=5 npm run bench:startup
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';

const REPO = resolve(import.meta.dirname, '../..');
const ROUNDS = Number(process.env.ROUNDS ?? 3);
const WAYS = {
  tsx: join(REPO, 'bench/startup/tsx-bin.mjs'),
  'tsx-cold': join(REPO, 'bench/startup/tsx-bin.mjs'),
  compiled: join(REPO, 'bin/flotilla.js'),
} as const;
type Way = keyof typeof WAYS;
const coldDirs: string[] = [];

/** Environment without the services a developer may have set: embedded defaults only. */
function cleanEnv(way: Way): NodeJS.ProcessEnv {
  const env = { ...process.env };
  // tsx keeps its transform cache under os.tmpdir(): an empty TMPDIR is a fresh clone's first run.
  if (way === 'tsx-cold') {
    env.TMPDIR = mkdtempSync(join(tmpdir(), 'flotilla-bench-tsx-cold-'));
    coldDirs.push(env.TMPDIR);
  }
  for (const k of ['DATABASE_URL', 'REDIS_URL', 'ETCD_ENDPOINTS', 'FLOTILLA_API_TOKEN']) {
    delete env[k];
  }
  return env;
}

/** Starts `node <bin> ...args` and resolves with the ms until `ready` matches its stdout. */
function startUntil(
  way: Way,
  args: string[],
  ready: RegExp,
): Promise<{ child: ChildProcess; ms: number; out: string }> {
  const started = performance.now();
  const child = spawn(process.execPath, [WAYS[way], ...args], {
    cwd: REPO,
    env: cleanEnv(way),
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  let err = '';
  return new Promise((res, rej) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      rej(new Error(`${way} ${args[0]} not ready in 180 s:\n${out}\n${err}`));
    }, 180_000);
    child.stderr!.on('data', (d) => {
      err += d;
    });
    child.stdout!.on('data', (d) => {
      out += d;
      if (ready.test(out)) {
        clearTimeout(timer);
        res({ child, ms: performance.now() - started, out });
      }
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      rej(new Error(`${way} ${args[0]} exited with ${code}:\n${out}\n${err}`));
    });
  });
}

async function stop(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((r) => child.once('exit', r));
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), 20_000);
  await exited;
  clearTimeout(timer);
}

/** pid -> parent pid for every process, from /proc. */
function parents(): Map<number, number> {
  const map = new Map<number, number>();
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const stat = readFileSync(`/proc/${name}/stat`, 'utf8');
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      map.set(Number(name), ppid);
    } catch {
      // exited meanwhile
    }
  }
  return map;
}

/** RSS (MiB) summed over `pid` and its descendants, with the processes' names. */
function treeRss(pid: number): { mb: number; names: string[] } {
  const ppid = parents();
  const tree = [pid];
  for (let i = 0; i < tree.length; i++) {
    for (const [p, parent] of ppid) if (parent === tree[i]) tree.push(p);
  }
  let kb = 0;
  const names: string[] = [];
  for (const p of tree) {
    try {
      const status = readFileSync(`/proc/${p}/status`, 'utf8');
      kb += Number(/^VmRSS:\s+(\d+)/m.exec(status)?.[1] ?? 0);
      names.push(/^Name:\s+(\S+)/m.exec(status)?.[1] ?? '?');
    } catch {
      // exited meanwhile
    }
  }
  return { mb: kb / 1024, names };
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

async function freePort(): Promise<number> {
  const { createServer } = await import('node:net');
  return new Promise((res) => {
    const srv = createServer().listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as { port: number };
      srv.close(() => res(port));
    });
  });
}

async function serveOnce(way: Way): Promise<{ ms: number; rss: number; names: string[] }> {
  const dataDir = mkdtempSync(join(tmpdir(), 'flotilla-bench-startup-'));
  try {
    const args = ['serve', '--data-dir', dataDir, '--api-port', String(await freePort())];
    args.push('--proxy-port', String(await freePort()));
    const { child, ms } = await startUntil(way, args, /^api \S+$[\s\S]*^proxy \S+$/m);
    const { mb, names } = treeRss(child.pid!);
    await stop(child);
    return { ms, rss: mb, names };
  } finally {
    rmSync(dataDir, { recursive: true, force: true });
  }
}

async function echoOnce(way: Way): Promise<{ ms: number; rss: number; names: string[] }> {
  const { child, ms, out } = await startUntil(
    way,
    ['echo-server', '--port', '0'],
    /echo-server listening on http:\/\/\S+:\d+/,
  );
  const port = /echo-server listening on http:\/\/\S+:(\d+)/.exec(out)![1];
  const res = await fetch(`http://127.0.0.1:${port}/v1/models`);
  if (!res.ok) throw new Error(`echo-server /v1/models answered ${res.status}`);
  await res.arrayBuffer();
  const { mb, names } = treeRss(child.pid!);
  await stop(child);
  return { ms, rss: mb, names };
}

type Sample = { ms: number; rss: number; names: string[] };

async function measure(what: string, once: (way: Way) => Promise<Sample>) {
  const samples: Record<Way, Sample[]> = { tsx: [], 'tsx-cold': [], compiled: [] };
  // Interleaved, so both ways see the same machine load.
  for (let i = 0; i < ROUNDS; i++) {
    for (const way of ['tsx', 'tsx-cold', 'compiled'] as const) samples[way].push(await once(way));
  }
  const row = (way: Way) => {
    const s = samples[way];
    const procs = s.at(-1)!.names;
    return {
      ms: median(s.map((x) => x.ms)),
      rss: median(s.map((x) => x.rss)),
      procs: `${procs.length} (${procs.join(', ')})`,
      all: s.map((x) => Math.round(x.ms)).join(', '),
    };
  };
  const tsx = row('tsx');
  const cold = row('tsx-cold');
  const compiled = row('compiled');
  console.log(`\n${what} (${ROUNDS} rounds each, interleaved; medians)`);
  console.log(
    `  tsx, warm cache    start ${tsx.ms.toFixed(0).padStart(5)} ms  [${tsx.all}]  RSS ${tsx.rss.toFixed(1)} MiB  processes ${tsx.procs}`,
  );
  console.log(
    `  tsx, cold cache    start ${cold.ms.toFixed(0).padStart(5)} ms  [${cold.all}]  RSS ${cold.rss.toFixed(1)} MiB  processes ${cold.procs}`,
  );
  console.log(
    `  compiled (after)   start ${compiled.ms.toFixed(0).padStart(5)} ms  [${compiled.all}]  RSS ${compiled.rss.toFixed(1)} MiB  processes ${compiled.procs}`,
  );
  console.log(
    `  ratio after/before start ${(compiled.ms / tsx.ms).toFixed(2)}x (cold: ${(compiled.ms / cold.ms).toFixed(2)}x), RSS ${(compiled.rss / tsx.rss).toFixed(2)}x (cold: ${(compiled.rss / cold.rss).toFixed(2)}x)`,
  );
}

if (!existsSync(join(REPO, 'dist/src/cli/main.js'))) {
  console.error('bench/startup: run `npm run build` first (the compiled bin runs dist/)');
  process.exit(1);
}
console.log(`node ${process.version}, ${ROUNDS} rounds (one warm-up start of each way first)`);
await echoOnce('tsx');
await echoOnce('compiled');
await measure('serve: spawn to both listeners (fresh data dir, embedded PGlite)', serveOnce);
await measure('echo-server: spawn to listening; RSS of one replica after one request', echoOnce);
for (const dir of coldDirs) rmSync(dir, { recursive: true, force: true });
