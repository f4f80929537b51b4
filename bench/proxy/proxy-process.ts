/**
 * Flotilla's proxy in a process of its own for bench/proxy (so it has a core of its own, as
 * nginx does). Reads the routing table from BENCH_TABLE (JSON), prints `LISTENING <port>`.
 * PROXY_WORKERS=N (> 1) runs N proxy processes sharing the port through node:cluster, an
 * approximation of `serve --proxy-workers N` until that lands: each worker has its own
 * admission counts.
 */
import cluster from 'node:cluster';
import { createProxy } from '../../src/proxy/proxy-server.ts';
import { createStaticTableSource } from '../../src/proxy/routing-table-source.ts';

const workers = Math.max(1, Number(process.env.PROXY_WORKERS ?? 1));

if (workers > 1 && cluster.isPrimary) {
  let reported = false;
  for (let i = 0; i < workers; i++) {
    const w = cluster.fork();
    w.on('message', (m: { port?: number }) => {
      if (m.port && !reported) {
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
