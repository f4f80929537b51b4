/**
 * A stand-in replica for health tests: a real HTTP server on 127.0.0.1 whose /health answers
 * 200, 500 or never, and which records which prober (x-flotilla-prober) hit it and when.
 */
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { waitFor as waitForCondition } from '../../harness/wait.ts';

export type ReplicaMode = 'ok' | 'fail' | 'hang';

export interface Hit {
  prober: string;
  path: string;
  at: number;
}

export interface TestReplica {
  url: string;
  port: number;
  mode: ReplicaMode;
  hits: Hit[];
  close(): Promise<void>;
}

export async function startTestReplica(): Promise<TestReplica> {
  const hanging = new Set<ServerResponse>();
  const replica: TestReplica = {
    url: '',
    port: 0,
    mode: 'ok',
    hits: [],
    close: async () => {},
  };
  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    const prober = String(req.headers['x-flotilla-prober'] ?? 'unknown');
    replica.hits.push({ prober, path: req.url ?? '', at: Date.now() });
    if (replica.mode === 'hang') {
      hanging.add(res);
      res.on('close', () => hanging.delete(res));
      return;
    }
    res.statusCode = replica.mode === 'ok' ? 200 : 500;
    res.setHeader('content-type', 'application/json');
    res.end(JSON.stringify({ ok: replica.mode === 'ok' }));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  const { port } = server.address() as AddressInfo;
  replica.port = port;
  replica.url = `http://127.0.0.1:${port}`;
  let closed = false;
  replica.close = async () => {
    if (closed) return;
    closed = true;
    for (const res of hanging) res.destroy();
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  };
  return replica;
}

/** Polls `cond` until truthy (test/harness/wait.ts, with this folder's argument order). */
export function waitFor<T>(
  what: string,
  cond: () => T | Promise<T>,
  { timeoutMs = 10_000, everyMs = 20 }: { timeoutMs?: number; everyMs?: number } = {},
): Promise<NonNullable<T>> {
  return waitForCondition(cond, { timeoutMs, intervalMs: everyMs, message: what });
}
