/**
 * Proxy workers benchmark (not a test): `npm run bench:workers`.
 *
 * In one run: two fixed-response backends (bench/proxy/backend.mjs, own processes), then
 * Flotilla's proxy in this process (as `serve` without --proxy-workers) and on 1 and 2
 * worker processes (`serve --proxy-workers N`), each driven by wrk (2 threads, 64
 * connections, BENCH_SECONDS, 127.0.0.1). Prints req/s, p50/p99 and the ratios to the
 * in-process proxy. On a 2-core machine wrk, the backends and the proxy share the cores.
 */
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { createProxy, type FlotillaProxy } from '../../src/proxy/proxy-server.ts';
import { createStaticTableSource } from '../../src/proxy/routing-table-source.ts';
import { createProxyWorkers } from '../../src/proxy/workers.ts';

const SECONDS = Number(process.env.BENCH_SECONDS ?? 5);
const CONNECTIONS = Number(process.env.BENCH_CONNECTIONS ?? 64);
const BACKEND = fileURLToPath(new URL('../proxy/backend.mjs', import.meta.url));
const children: ChildProcess[] = [];
process.on('exit', () => {
  for (const c of children) if (c.exitCode === null) c.kill('SIGKILL');
});

function backend(id: string): Promise<string> {
  const p = spawn(process.execPath, [BACKEND], {
    env: { ...process.env, REPLICA_ID: id, PORT: '0' },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  children.push(p);
  return new Promise((resolve) => {
    let buf = '';
    p.stdout!.on('data', (d: Buffer) => {
      buf += d.toString();
      const m = /(\d{2,5})/.exec(buf);
      if (m) resolve(`http://127.0.0.1:${m[1]}`);
    });
  });
}

function wrk(url: string): Promise<{ rps: number; p50: number; p99: number }> {
  return new Promise((resolve, reject) => {
    execFile(
      '/usr/bin/wrk',
      ['-t2', `-c${CONNECTIONS}`, `-d${SECONDS}s`, '--latency', url],
      (err, out) => {
        if (err) return reject(err);
        const rps = Number(/Requests\/sec:\s+([\d.]+)/.exec(out)?.[1]);
        const ms = (label: string) => {
          const m = new RegExp(`${label}%\\s+([\\d.]+)(us|ms|s)`).exec(out);
          if (!m) return Number.NaN;
          const v = Number(m[1]);
          return m[2] === 'us' ? v / 1000 : m[2] === 's' ? v * 1000 : v;
        };
        resolve({ rps, p50: ms('50'), p99: ms('99') });
      },
    );
  });
}

async function main(): Promise<void> {
  const urls = await Promise.all([backend('a'), backend('b')]);
  const table = {
    version: 1,
    deployments: [
      {
        deploymentId: 'd',
        name: 'm',
        routing: { strategy: 'round_robin' as const, request_timeout_s: 30, retries: 2 },
        routes: urls.map((url, i) => ({
          routeId: `r${i}`,
          replicaId: `r${i}`,
          url,
          state: 'HEALTHY' as const,
          weight: 1,
        })),
        // Plenty of room: this measures the data plane, not admission.
        admission: { max_concurrent_requests: 1000, max_queue_size: 1000 },
      },
    ],
    endpoints: [],
  };
  const rows: Array<{ name: string; rps: number; p50: number; p99: number }> = [];
  const targets: Array<[string, () => Promise<FlotillaProxy>]> = [
    ['in-process', () => createProxy({ source: createStaticTableSource(table) })],
    [
      '1 worker',
      () =>
        createProxyWorkers({ source: createStaticTableSource(table), count: 1, logLevel: 'warn' }),
    ],
    [
      '2 workers',
      () =>
        createProxyWorkers({ source: createStaticTableSource(table), count: 2, logLevel: 'warn' }),
    ],
  ];
  for (const [name, start] of targets) {
    const proxy = await start();
    try {
      await wrk(`${proxy.url}/m/x`).catch(() => undefined); // warm-up (JIT, pools)
      rows.push({ name, ...(await wrk(`${proxy.url}/m/x`)) });
    } finally {
      await proxy.close();
    }
  }
  const base = rows[0]!;
  console.log(`proxy workers: wrk -t2 -c${CONNECTIONS} -d${SECONDS}s, fixed 100-byte responses`);
  console.log('target       req/s    ×in-process  p50 ms  p99 ms');
  for (const r of rows) {
    console.log(
      `${r.name.padEnd(11)}  ${r.rps.toFixed(0).padStart(7)}  ${(r.rps / base.rps).toFixed(2).padStart(11)}  ${r.p50.toFixed(2).padStart(6)}  ${r.p99.toFixed(2).padStart(6)}`,
    );
  }
  for (const c of children) c.kill('SIGKILL');
}

main().catch((err) => {
  console.error(err);
  process.exitCode = 1;
});
