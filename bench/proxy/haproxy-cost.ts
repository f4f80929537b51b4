/**
 * Instructions per request of the HAProxy data plane's config against bench/proxy's nginx (not
 * a test): `npx tsx bench/proxy/haproxy-cost.ts`. Load-independent: each proxy runs alone under
 * `valgrind --tool=callgrind` (user-space instructions, the machine's load does not change
 * them), with instrumentation switched on only after a warm-up, for one wrk run; the total is
 * divided by the requests wrk counted. Two fixed-response backends (backend.mjs) as in
 * bench/proxy, the same table (round robin, retries 2, admission far above the load).
 *
 * Targets (COST_TARGETS, comma separated): `nginx` (run.ts's config, `master_process off`:
 * the worker's request path is the same), `haproxy` (this checkout's config.ts),
 * `haproxy:<dir>` (the config.ts of another checkout, e.g. an extracted `main`), `cfg:<file>`
 * (a hand-written haproxy.cfg; `@B1@`/`@B2@` are replaced by the backend ports, `@PORT@` by the
 * listening port, `@DIR@` by a scratch directory holding the maps).
 * Env: COST_SECONDS (wrk run under callgrind, default 6), COST_CONNECTIONS (16), COST_KEEP=1
 * keeps the callgrind.out files (for callgrind_annotate) in COST_OUT (default /tmp),
 * COST_HAPROXY_ARGS adds arguments to haproxy's command line.
 */
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { freePort } from '../../test/harness/services.ts';

const SECONDS = Number(process.env.COST_SECONDS ?? 6);
const CONNECTIONS = Number(process.env.COST_CONNECTIONS ?? 16);
const TARGETS = (process.env.COST_TARGETS ?? 'nginx,haproxy').split(',');
const OUT = process.env.COST_OUT ?? tmpdir();
/** Extra haproxy command-line arguments (COST_HAPROXY_ARGS, space separated). */
const EXTRA = (process.env.COST_HAPROXY_ARGS ?? '').split(' ').filter(Boolean);
const here = (f: string) => fileURLToPath(new URL(f, import.meta.url));
const children: ChildProcess[] = [];
const scratch: string[] = [];
process.on('exit', () => {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  for (const d of scratch) rmSync(d, { recursive: true, force: true });
});

function startBackend(id: string): Promise<number> {
  const proc = spawn(process.execPath, [here('./backend.mjs')], {
    env: { ...process.env, REPLICA_ID: id, PORT: '0' },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  children.push(proc);
  return new Promise((res, rej) => {
    let buf = '';
    proc.stdout!.on('data', (d: Buffer) => {
      buf += d.toString();
      const m = /LISTENING (\d+)/.exec(buf);
      if (m) res(Number(m[1]));
    });
    proc.once('exit', (code) => rej(new Error(`backend exited ${code}`)));
  });
}

function wrk(url: string, seconds: number): { requests: number; out: string } {
  const out = execFileSync('/usr/bin/wrk', ['-t1', `-c${CONNECTIONS}`, `-d${seconds}s`, url], {
    encoding: 'utf8',
  });
  return { requests: Number(/(\d+) requests in/.exec(out)?.[1]), out };
}

async function waitHttp(url: string): Promise<void> {
  const until = Date.now() + 60_000;
  for (;;) {
    try {
      const r = await fetch(url);
      await r.arrayBuffer();
      if (r.status === 200) return;
    } catch {
      // not up yet
    }
    if (Date.now() > until) throw new Error(`${url} did not answer 200`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

function table(ports: number[]) {
  return {
    version: 1,
    deployments: [
      {
        deploymentId: 'bench',
        name: 'm',
        routing: { strategy: 'round_robin', request_timeout_s: 60, retries: 2 },
        routes: ports.map((p, i) => ({
          routeId: `route-r${i + 1}`,
          replicaId: `r${i + 1}`,
          url: `http://127.0.0.1:${p}`,
          state: 'HEALTHY',
          weight: 1,
        })),
        admission: { max_concurrent_requests: 256, max_queue_size: 1024 },
      },
    ],
    endpoints: [],
  };
}

function nginxConf(dir: string, port: number, ports: number[]): string {
  return `
master_process off;
daemon off;
worker_processes 1;
pid ${dir}/nginx.pid;
error_log ${dir}/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path ${dir}/body;
  proxy_temp_path ${dir}/proxy;
  fastcgi_temp_path ${dir}/fastcgi;
  uwsgi_temp_path ${dir}/uwsgi;
  scgi_temp_path ${dir}/scgi;
  upstream backend {
${ports.map((p) => `    server 127.0.0.1:${p};`).join('\n')}
    keepalive 128;
  }
  server {
    listen 127.0.0.1:${port};
    keepalive_requests 1000000;
    location /m/ {
      proxy_pass http://backend/;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
      proxy_set_header X-Forwarded-Proto $scheme;
      proxy_set_header X-Forwarded-Host $host;
      proxy_buffering off;
      proxy_next_upstream error timeout http_502 http_503;
    }
  }
}
`;
}

/** The command line of a target, with its config written to `dir`. */
async function prepare(
  target: string,
  dir: string,
  port: number,
  ports: number[],
): Promise<string[]> {
  if (target === 'nginx') {
    writeFileSync(join(dir, 'nginx.conf'), nginxConf(dir, port, ports));
    return [
      '/usr/sbin/nginx',
      '-p',
      dir,
      '-e',
      join(dir, 'error.log'),
      '-c',
      join(dir, 'nginx.conf'),
    ];
  }
  if (target.startsWith('cfg:')) {
    const text = readFileSync(target.slice(4), 'utf8')
      .replaceAll('@B1@', String(ports[0]))
      .replaceAll('@B2@', String(ports[1]))
      .replaceAll('@PORT@', String(port))
      .replaceAll('@DIR@', dir);
    writeFileSync(join(dir, 'haproxy.cfg'), text);
    return ['/usr/sbin/haproxy', ...EXTRA, '-f', join(dir, 'haproxy.cfg')];
  }
  const root = target === 'haproxy' ? resolve(here('../..')) : resolve(target.slice(8));
  const mod = await import(join(root, 'src/data-plane/haproxy/config.ts'));
  const paths = mod.haproxyPaths(dir);
  const backends = mod.backendsOf(table(ports));
  const maps = mod.renderMaps(backends);
  if (maps.backends !== undefined) writeFileSync(paths.backendsMap, maps.backends);
  if (maps.replicas !== undefined) writeFileSync(paths.replicasMap, maps.replicas);
  if (maps.failStatic !== undefined) writeFileSync(paths.failStaticMap, maps.failStatic);
  writeFileSync(
    paths.config,
    mod.renderConfig({ host: '127.0.0.1', port, threads: 1 }, backends, paths),
  );
  return ['/usr/sbin/haproxy', ...EXTRA, '-f', paths.config];
}

async function measure(target: string, ports: number[]): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'flotilla-cost-'));
  scratch.push(dir);
  const port = await freePort();
  const cmd = await prepare(target, dir, port, ports);
  const outFile = join(OUT, `callgrind.out.${target.replace(/[^a-z0-9]/gi, '_')}`);
  const proc = spawn(
    'valgrind',
    ['--tool=callgrind', '--instr-atstart=no', `--callgrind-out-file=${outFile}`, ...cmd],
    { stdio: ['ignore', 'ignore', 'pipe'] },
  );
  children.push(proc);
  let err = '';
  proc.stderr!.on('data', (d: Buffer) => {
    err += d.toString();
  });
  const url = `http://127.0.0.1:${port}/m/x`;
  await waitHttp(url);
  wrk(url, 2); // warm-up: connections, pools, server connections
  execFileSync('callgrind_control', ['-i', 'on', String(proc.pid)], { stdio: 'ignore' });
  const { requests } = wrk(url, SECONDS);
  execFileSync('callgrind_control', ['-i', 'off', String(proc.pid)], { stdio: 'ignore' });
  proc.kill('SIGTERM');
  await new Promise((r) => proc.once('exit', r));
  const text = readFileSync(outFile, 'utf8');
  const total = Number(/^totals:\s*(\d+)/m.exec(text)?.[1]);
  if (!Number.isFinite(total)) throw new Error(`no callgrind total for ${target}: ${err}`);
  if (process.env.COST_KEEP !== '1') rmSync(outFile, { force: true });
  console.log(
    `  ${target.padEnd(40)} ${String(requests).padStart(7)} requests  ${Math.round(total / requests)
      .toString()
      .padStart(7)} instructions/request`,
  );
}

const ports = [await startBackend('r1'), await startBackend('r2')];
console.log(
  `haproxy-cost: callgrind, wrk -c${CONNECTIONS} for ${SECONDS}s per target (user-space instructions)`,
);
for (const t of TARGETS) await measure(t, ports);
process.exit(0);
