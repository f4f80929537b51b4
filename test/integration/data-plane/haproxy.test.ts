/**
 * The data-plane contract against the managed HAProxy (src/data-plane/haproxy), and what only
 * it has: servers follow the table through the runtime API without a reload; a new deployment
 * reloads without failing a request in flight.
 */
import { get as httpGet } from 'node:http';
import { describe, expect, it } from 'vitest';
import {
  createHaproxyDataPlane,
  type HaproxyDataPlane,
} from '../../../src/data-plane/haproxy/haproxy-data-plane.ts';
import type { FlotillaProxy } from '../../../src/proxy/proxy-server.ts';
import { createStaticTableSource } from '../../../src/proxy/routing-table-source.ts';
import {
  client,
  countBy,
  deployment,
  proxyTestFixture,
  startReplica,
  table,
  waitFor,
} from '../proxy/helpers.ts';
import { dataPlaneContract } from './contract.ts';

const odd: string[] = [];
function getOnNewConnection(url: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = httpGet(url, { agent: false }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => {
        text += d;
      });
      res.on('end', () => {
        if (res.statusCode !== 200) odd.push(`${res.statusCode} ${text.slice(0, 200)}`);
        resolve(res.statusCode ?? 0);
      });
    });
    req.on('error', reject);
  });
}

const settled = (p: FlotillaProxy) => (p as HaproxyDataPlane).settled();

dataPlaneContract({
  name: 'haproxy',
  capabilities: {
    resolvesDotSegments: false,
    routeUrlBasePath: false,
    stripsConnectionNamedHeaders: false,
    outlierEjection: false,
    inflightExact: false,
  },
  start: (source) => createHaproxyDataPlane({ source, statsIntervalMs: 50 }),
  settled,
});

describe('haproxy data plane: runtime API and reloads', () => {
  const { proxies, clients } = proxyTestFixture();

  it('adds, drains, removes and re-weights servers without a reload', async () => {
    const [a, b] = await Promise.all(['a', 'b'].map((id) => startReplica(id)));
    const source = createStaticTableSource(
      table([deployment({ name: 'm', strategy: 'weighted', replicas: [{ replica: a! }] })]),
    );
    const hp = await createHaproxyDataPlane({ source, statsIntervalMs: 50 });
    proxies.push(hp);
    const c = client();
    clients.push(c);
    const spread = async (n: number) => {
      const seen = [];
      for (let i = 0; i < n; i++)
        seen.push((await c.get(`${hp.url}/m/x`)).headers['x-flotilla-replica']);
      return countBy(seen as string[]);
    };
    const pidBefore = await hp.runtime('show info');
    source.set(
      table([
        deployment({
          name: 'm',
          strategy: 'weighted',
          replicas: [
            { replica: a!, weight: 1 },
            { replica: b!, weight: 3 },
          ],
        }),
      ]),
    );
    await hp.settled();
    expect(await spread(8)).toEqual({ a: 2, b: 6 });
    source.set(
      table([
        deployment({
          name: 'm',
          strategy: 'weighted',
          replicas: [
            { replica: a!, weight: 1, state: 'TERMINATING' },
            { replica: b!, weight: 3 },
          ],
        }),
      ]),
    );
    await hp.settled();
    expect(await spread(4)).toEqual({ b: 4 });
    source.set(
      table([deployment({ name: 'm', strategy: 'weighted', replicas: [{ replica: b! }] })]),
    );
    await hp.settled();
    await waitFor(
      async () => !(await hp.runtime('show servers state d_dep-m')).includes(' route-a '),
      'route-a deleted',
    );
    expect(await spread(3)).toEqual({ b: 3 });
    expect(hp.reloads).toBe(0);
    const pid = (s: string) => /^Pid: (\d+)/m.exec(s)?.[1];
    expect(pid(await hp.runtime('show info'))).toBe(pid(pidBefore));
  });

  // Each load request on a connection of its own: HAProxy (2.6) closes idle keep-alive
  // connections of the old worker on reload, and a client that writes on one at that moment
  // must retry (HTTP/1.1's rule for idempotent requests); what must never happen is a refused
  // connection or a request in flight cut.
  it('reloads for a new deployment without refusing a connection or cutting a request in flight', async () => {
    const [a, n] = await Promise.all(['a', 'n'].map((id) => startReplica(id)));
    const source = createStaticTableSource(
      table([deployment({ name: 'm', replicas: [{ replica: a! }] })]),
    );
    const hp = await createHaproxyDataPlane({ source, statsIntervalMs: 50 });
    proxies.push(hp);
    const c = client();
    clients.push(c);
    const slow = c.get(`${hp.url}/m/x?delay=1500`);
    let stop = false;
    const statuses: number[] = [];
    const errors: unknown[] = [];
    const loops = Array.from({ length: 4 }, async () => {
      while (!stop) {
        try {
          statuses.push(await getOnNewConnection(`${hp.url}/m/x`));
        } catch (err) {
          errors.push(err);
        }
      }
    });
    await waitFor(() => statuses.length > 50, 'load');
    source.set(
      table([
        deployment({ name: 'm', replicas: [{ replica: a! }] }),
        deployment({ name: 'n', replicas: [{ replica: n! }] }),
      ]),
    );
    await hp.settled();
    expect(hp.reloads).toBe(1);
    const at = statuses.length;
    await waitFor(() => statuses.length > at + 50, 'load after the reload');
    stop = true;
    await Promise.all(loops);
    expect((await slow).status).toBe(200);
    expect(errors).toEqual([]);
    expect(odd).toEqual([]);
    expect(statuses.filter((s) => s !== 200)).toEqual([]);
    expect((await c.get(`${hp.url}/n/x`)).headers['x-flotilla-replica']).toBe('n');
  });
});
