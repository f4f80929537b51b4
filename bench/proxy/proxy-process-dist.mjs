// Flotilla's proxy from the compiled JavaScript (dist/, `npm run build`), as `serve` runs it,
// in a process of its own for bench/proxy: no TypeScript loader in the measured process. Reads
// the routing table from BENCH_TABLE (JSON), prints `LISTENING <port>`. FLOTILLA_DIST points at
// another checkout's dist/ (default: this one's). PROXY_WORKERS=N (> 1) runs N processes
// sharing the port through node:cluster, as proxy-process.ts does.
import cluster from 'node:cluster';
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
  const dist = process.env.FLOTILLA_DIST ?? fileURLToPath(new URL('../../dist', import.meta.url));
  const load = (f) => import(pathToFileURL(`${dist}/src/proxy/${f}`).href);
  const { createProxy } = await load('proxy-server.js');
  const { createStaticTableSource } = await load('routing-table-source.js');
  const table = JSON.parse(process.env.BENCH_TABLE ?? '');
  const proxy = await createProxy({ source: createStaticTableSource(table), port: 0 });
  if (cluster.isWorker) process.send?.({ port: proxy.port });
  else process.stdout.write(`LISTENING ${proxy.port}\n`);
  const stop = () => {
    void proxy.close().then(() => process.exit(0));
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}
