/**
 * Flotilla's proxy in a process of its own for bench/proxy (so it has a core of its own, as
 * nginx does). Reads the routing table from BENCH_TABLE (JSON), prints `LISTENING <port>`.
 */
import { createProxy } from '../../src/proxy/proxy-server.ts';
import { createStaticTableSource } from '../../src/proxy/routing-table-source.ts';

const table = JSON.parse(process.env.BENCH_TABLE ?? '');
const proxy = await createProxy({ source: createStaticTableSource(table), port: 0 });
process.stdout.write(`LISTENING ${proxy.port}\n`);
const stop = () => {
  void proxy.close().then(() => process.exit(0));
};
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
