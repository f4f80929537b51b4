/**
 * The HAProxy data plane (src/data-plane/haproxy) in a process of its own for bench/proxy:
 * the manager in this process, HAProxy (one thread, as nginx has one worker) as its child.
 * Reads the routing table from BENCH_TABLE (JSON), prints `LISTENING <port>`.
 */
import { createHaproxyDataPlane } from '../../src/data-plane/haproxy/haproxy-data-plane.ts';
import { createStaticTableSource } from '../../src/proxy/routing-table-source.ts';

const table = JSON.parse(process.env.BENCH_TABLE ?? '');
const plane = await createHaproxyDataPlane({
  source: createStaticTableSource(table),
  threads: Number(process.env.HAPROXY_THREADS ?? 1),
});
process.stdout.write(`LISTENING ${plane.port}\n`);
const stop = () => {
  void plane.close().then(() => process.exit(0));
};
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
