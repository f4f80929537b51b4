/**
 * Issue 15: idle, silent, trickled-header and slow-body connections stayed open past 58 s on
 * the proxy and on the API port. Each port closes them after its configured limit (short here).
 */
import { connect, type Socket } from 'node:net';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { buildApp } from '../../src/api/build-app.ts';
import { createMetrics } from '../../src/api/metrics.ts';
import {
  API_CONNECTION_TIMEOUTS,
  type ConnectionTimeouts,
  PROXY_CONNECTION_TIMEOUTS,
} from '../../src/domain/connection-timeouts.ts';
import { createProxy } from '../../src/proxy/proxy-server.ts';
import { createStaticTableSource } from '../../src/proxy/routing-table-source.ts';
import { buildNodeApp } from '../../src/roles/node-app.ts';
import { type InMemoryApi, START_TIMEOUT_MS, startInMemoryApi } from './api/in-memory-api.ts';

const SHORT: ConnectionTimeouts = { headersMs: 400, requestMs: 800, keepAliveMs: 400 };
/** Well above every SHORT limit plus the check interval, well below the old ~60 s. */
const CLOSED_WITHIN_MS = 3_000;

let api: InMemoryApi;
beforeAll(async () => {
  api = await startInMemoryApi();
}, START_TIMEOUT_MS);
afterAll(async () => {
  await api?.close();
});

const closers: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const c of closers.splice(0).reverse()) await c();
});

/** Opens a raw TCP connection, runs `talk`, and resolves with ms until the server closed it. */
function closedAfter(port: number, talk: (s: Socket) => void): Promise<number> {
  return new Promise((resolve, reject) => {
    const started = Date.now();
    const s = connect(port, '127.0.0.1', () => talk(s));
    const guard = setTimeout(() => {
      s.destroy();
      reject(new Error(`the server kept the connection open for ${CLOSED_WITHIN_MS} ms`));
    }, CLOSED_WITHIN_MS);
    s.on('data', () => {});
    s.on('error', () => {});
    s.on('close', () => {
      clearTimeout(guard);
      resolve(Date.now() - started);
    });
  });
}

const halfHeader = (s: Socket) => s.write('GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: ');
const nothing = () => {};
const slowBody = (s: Socket) =>
  s.write('POST /health HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nabc');
const idleAfterOne = (s: Socket) => s.write('GET /health HTTP/1.1\r\nHost: x\r\n\r\n');

const clients = { 'half a header': halfHeader, nothing, 'a slow body': slowBody };

async function proxyPort(timeouts: Partial<ConnectionTimeouts>): Promise<number> {
  const source = createStaticTableSource();
  const proxy = await createProxy({ source, timeouts });
  closers.push(async () => {
    await proxy.close();
    await source.close();
  });
  return proxy.port;
}

async function nodeAppPort(timeouts: Partial<ConnectionTimeouts>): Promise<number> {
  const app = buildNodeApp({
    role: 'proxy',
    ready: async () => ({ ready: true, missing: [] }),
    registries: [],
    timeouts,
  });
  closers.push(() => app.close());
  await app.listen({ host: '127.0.0.1', port: 0 });
  return (app.server.address() as { port: number }).port;
}

async function apiPort(timeouts: Partial<ConnectionTimeouts>): Promise<number> {
  const app = buildApp({
    flotilla: api.flotilla,
    metrics: createMetrics({ defaultMetrics: false }),
    timeouts,
  });
  closers.push(() => app.close());
  await app.listen({ host: '127.0.0.1', port: 0 });
  return (app.server.address() as { port: number }).port;
}

const ports = { proxy: proxyPort, 'API port': apiPort, 'single-role node app': nodeAppPort };

describe('connection timeouts', () => {
  for (const [where, open] of Object.entries(ports)) {
    for (const [what, talk] of Object.entries(clients)) {
      it(`the ${where} closes a connection that sends ${what} within its limits`, async () => {
        const port = await open(SHORT);
        const ms = await closedAfter(port, talk);
        expect(ms).toBeGreaterThanOrEqual(SHORT.headersMs - 50);
      });
    }
    it(`the ${where} closes a keep-alive connection idle after one request`, async () => {
      const port = await open(SHORT);
      await closedAfter(port, idleAfterOne);
    });
  }

  it('documents defaults below the ~60 s the black-box probe saw', () => {
    for (const t of [PROXY_CONNECTION_TIMEOUTS, API_CONNECTION_TIMEOUTS]) {
      expect(t.headersMs).toBeLessThanOrEqual(10_000);
      expect(t.requestMs).toBeLessThanOrEqual(30_000);
      expect(t.keepAliveMs).toBeLessThanOrEqual(30_000);
    }
  });
});
