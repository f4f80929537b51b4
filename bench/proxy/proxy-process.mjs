// Flotilla's proxy in a process of its own for bench/proxy (so it has a core of its own, as
// nginx does). PROXY_SOURCE is the folder that holds proxy/proxy-server: a checkout's src/ (the
// TypeScript sources: run node with `--import tsx`) or its dist/src/ (the compiled JavaScript
// from `npm run build`, as `serve` runs it: no TypeScript loader in the measured process);
// default this checkout's src/. measure.ts's ownProxy() builds the command line. Reads the
// routing table from BENCH_TABLE (JSON), prints `LISTENING <port>`. PROXY_WORKERS=N (> 1) runs N
// proxy processes sharing the port through node:cluster, an approximation of
// `serve --proxy-workers N`: each worker has its own admission counts.
import cluster from 'node:cluster';
import { existsSync } from 'node:fs';
import { fileURLToPath, pathToFileURL } from 'node:url';

const workers = Math.max(1, Number(process.env.PROXY_WORKERS ?? 1));

if (workers > 1 && cluster.isPrimary) {
  let reported = false;
  for (let i = 0; i < workers; i++) {
    cluster.fork().on('message', (m) => {
      if (m?.port && !reported) {
        reported = true;
        process.stdout.write(`LISTENING ${m.port}\n`);
      }
    });
  }
  const stop = () => {
    for (const w of Object.values(cluster.workers ?? {})) w?.kill('SIGTERM');
    process.exit(0);
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
} else {
  const source = process.env.PROXY_SOURCE ?? fileURLToPath(new URL('../../src', import.meta.url));
  const ext = existsSync(`${source}/proxy/proxy-server.ts`) ? 'ts' : 'js';
  const load = (f) => import(pathToFileURL(`${source}/proxy/${f}.${ext}`).href);
  const { createProxy } = await load('proxy-server');
  const { createStaticTableSource } = await load('routing-table-source');
  const table = JSON.parse(process.env.BENCH_TABLE ?? '');
  // Port 0 in cluster workers: every worker gets the same port from the primary.
  const proxy = await createProxy({ source: createStaticTableSource(table), port: 0 });
  if (cluster.isWorker) process.send?.({ port: proxy.port });
  else process.stdout.write(`LISTENING ${proxy.port}\n`);
  const stop = () => {
    void proxy.close().then(() => process.exit(0));
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}
