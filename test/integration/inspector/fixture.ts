/**
 * A Flotilla over real PostgreSQL and Redis with a FakeBackend (no processes), its HTTP API
 * listening on a free port, and a hand on the health data: tests play the prober by writing
 * records to Redis and running one classification tick.
 */
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import type { FastifyInstance } from 'fastify';
import type { TestContext } from 'vitest';
import { buildApp } from '../../../src/api/build-app.ts';
import { createMetrics } from '../../../src/api/metrics.ts';
import type { HealthStore } from '../../../src/health/health-store.ts';
import { createRedisHealthStore } from '../../../src/health/redis-health-store.ts';
import { createFlotilla, type Flotilla } from '../../../src/index.ts';
import { FakeBackend } from '../../harness/fake-backend.ts';
import { isolatedDatabase, isolatedPrefix, services } from '../../harness/isolation.ts';

export const repo = resolve(import.meta.dirname, '../../..');

export interface InspectorFixture {
  flotilla: Flotilla;
  backend: FakeBackend;
  health: HealthStore;
  app: FastifyInstance;
  url: string;
  close(): Promise<void>;
}

export async function inspectorFixture(
  ctx: TestContext,
  opts: { token?: string } = {},
): Promise<InspectorFixture> {
  const { url: databaseUrl } = await isolatedDatabase(ctx);
  const prefix = isolatedPrefix(ctx);
  const backend = new FakeBackend();
  const flotilla = await createFlotilla({
    databaseUrl,
    redisUrl: services().redisUrl,
    redisKeyPrefix: prefix,
    dataDir: mkdtempSync(join(tmpdir(), 'flotilla-inspector-')),
    modelRoots: [repo],
    backend,
    prober: false,
    proxy: false,
    runtime: { healthCheckIntervalS: 3600, evictionIntervalS: 3600, shards: 2 },
  });
  const health = createRedisHealthStore({ url: services().redisUrl, keyPrefix: prefix });
  const app = buildApp({ flotilla, metrics: createMetrics(), token: opts.token });
  const url = await app.listen({ host: '127.0.0.1', port: 0 });
  return {
    flotilla,
    backend,
    health,
    app,
    url,
    async close() {
      await app.close();
      await health.close();
      await flotilla.close();
    },
  };
}

/**
 * Writes one probe result per route (all routes when none given) and runs one classification
 * tick. `stale` writes a result older than the staleness limit: the route is classified
 * DEGRADED and its replica gets no verdict.
 */
export async function probe(
  f: InspectorFixture,
  result: 'ready' | 'failing' | 'stale',
  routeIds?: string[],
): Promise<void> {
  const now = Date.now();
  const ids = routeIds ?? f.flotilla.runtime.probeTargets().map((t) => t.routeId);
  for (const routeId of ids) {
    const ready = result !== 'failing';
    await f.health.write(
      {
        routeId,
        ready,
        status: ready ? 200 : 500,
        latency_ms: 1,
        checked_at: result === 'stale' ? now - 3_600_000 : now,
        consecutive_successes: ready ? 1 : 0,
        consecutive_failures: ready ? 0 : 1,
        error: ready ? null : 'HTTP 500 from /health',
      },
      120,
    );
  }
  await f.flotilla.runtime.classifyNow();
}

/** Reads a server-sent-event stream until `until` says stop; returns the parsed events. */
export interface SseEvent {
  id: string | null;
  event: string;
  data: string;
}

export function parseSse(text: string): { events: SseEvent[]; rest: string } {
  const events: SseEvent[] = [];
  const blocks = text.split('\n\n');
  const rest = blocks.pop() ?? '';
  for (const block of blocks) {
    let id: string | null = null;
    let event = 'message';
    const data: string[] = [];
    for (const line of block.split('\n')) {
      if (line.startsWith(':')) continue;
      const i = line.indexOf(':');
      const field = i < 0 ? line : line.slice(0, i);
      const value = i < 0 ? '' : line.slice(i + 1).replace(/^ /, '');
      if (field === 'id') id = value;
      else if (field === 'event') event = value;
      else if (field === 'data') data.push(value);
    }
    if (data.length > 0 || id !== null) events.push({ id, event, data: data.join('\n') });
  }
  return { events, rest };
}

/** An open SSE connection read through fetch(), as the page reads it. */
export function openStream(
  url: string,
  headers: Record<string, string> = {},
): { events: SseEvent[]; status: Promise<number>; close(): void; ended: Promise<void> } {
  const events: SseEvent[] = [];
  const ac = new AbortController();
  let setStatus!: (n: number) => void;
  const status = new Promise<number>((r) => {
    setStatus = r;
  });
  const ended = (async () => {
    try {
      const res = await fetch(url, { headers, signal: ac.signal });
      setStatus(res.status);
      if (!res.body) return;
      const decoder = new TextDecoder();
      let buf = '';
      for await (const chunk of res.body) {
        buf += decoder.decode(chunk as Uint8Array, { stream: true });
        const { events: got, rest } = parseSse(buf);
        buf = rest;
        events.push(...got);
      }
    } catch {
      // aborted
    }
  })();
  return { events, status, close: () => ac.abort(), ended };
}
