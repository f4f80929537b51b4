// Flotilla's proxy from the compiled JavaScript (dist/, `npm run build`), as `serve` runs it,
// in a process of its own for bench/proxy: no TypeScript loader in the measured process. Reads
// the routing table from BENCH_TABLE (JSON), prints `LISTENING <port>`. FLOTILLA_DIST points at
// another checkout's dist/ (default: this one's).
import { fileURLToPath, pathToFileURL } from 'node:url';

const dist = process.env.FLOTILLA_DIST ?? fileURLToPath(new URL('../../dist', import.meta.url));
const { createProxy } = await import(pathToFileURL(`${dist}/src/proxy/proxy-server.js`).href);
const { createStaticTableSource } = await import(
  pathToFileURL(`${dist}/src/proxy/routing-table-source.js`).href
);
const table = JSON.parse(process.env.BENCH_TABLE ?? '');
const proxy = await createProxy({ source: createStaticTableSource(table), port: 0 });
process.stdout.write(`LISTENING ${proxy.port}\n`);
const stop = () => {
  void proxy.close().then(() => process.exit(0));
};
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
