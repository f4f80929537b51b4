/**
 * `serve --role proxy --proxy-workers 2` as processes (a coordinator, the proxy node and a
 * prober on PostgreSQL and Redis): the proxy port is served by two worker processes, and the
 * node's `/metrics` (its --api-port, answered by the primary) counts every request sent
 * through either worker exactly once: prom-client's AggregatorRegistry sums the workers'.
 */
import http from 'node:http';
import { describe, expect, it } from 'vitest';
import { deploy, echoDeployment, useCluster } from '../harness/cluster-role.ts';
import { waitFor } from '../harness/wait.ts';

const { startRole } = useCluster('nodeworkers');

/** One request on a connection of its own (so the cluster's round robin sees each). */
function get(url: string): Promise<{ status: number; worker: string }> {
  return new Promise((resolve, reject) => {
    const req = http.request(url, { agent: false }, (res) => {
      res.resume();
      res.on('end', () =>
        resolve({ status: res.statusCode ?? 0, worker: String(res.headers['x-flotilla-worker']) }),
      );
    });
    req.on('error', reject);
    req.end();
  });
}

/** Sum of a metric's samples for deployment `echo` in Prometheus text. */
function echoTotal(text: string, metric: string): number {
  let sum = 0;
  for (const line of text.split('\n')) {
    if (!line.startsWith(`${metric}{`) || !line.includes('deployment="echo"')) continue;
    sum += Number(line.slice(line.lastIndexOf(' ') + 1));
  }
  return sum;
}

describe('serve --role proxy --proxy-workers 2', () => {
  it("the node's /metrics sums the two workers: its request totals equal the requests sent", async () => {
    const coordinator = await startRole('coordinator');
    const node = await startRole('proxy', ['--proxy-workers', '2']);
    await startRole('prober');
    const proxy = node.proxy!;
    const metrics = async () => (await fetch(`${node.proxy_api}/metrics`)).text();
    expect((await deploy(coordinator.api!, echoDeployment(1))).status).toBe(201);

    // Both workers route echo (each follows the table the node relays).
    const seen = new Set<string>();
    await waitFor(
      async () => {
        const r = await get(`${proxy}/echo/v1/models`);
        if (r.status === 200) seen.add(r.worker);
        return seen.size === 2;
      },
      { timeoutMs: 90_000, intervalMs: 50, message: () => `both workers serve echo: ${[...seen]}` },
    );

    const before = await metrics();
    const SENT = 40;
    const answers = [];
    for (let i = 0; i < SENT; i++) answers.push(await get(`${proxy}/echo/v1/models`));
    expect(answers.map((a) => a.status)).toEqual(Array(SENT).fill(200));
    const perWorker = new Map<string, number>();
    for (const a of answers) perWorker.set(a.worker, (perWorker.get(a.worker) ?? 0) + 1);
    console.log(`[node-workers] ${SENT} requests: ${JSON.stringify([...perWorker])}`);
    expect([...perWorker.keys()].sort()).toEqual(['0', '1']);

    const after = await metrics();
    const delta = (metric: string) => echoTotal(after, metric) - echoTotal(before, metric);
    expect(delta('flotilla_proxy_requests_total')).toBe(SENT);
    expect(delta('flotilla_proxy_request_duration_seconds_count')).toBe(SENT);
    // One set of series, not one per worker.
    expect(after.match(/^# TYPE flotilla_proxy_requests_total /gm)).toHaveLength(1);
  });
});
