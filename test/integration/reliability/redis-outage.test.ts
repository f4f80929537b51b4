import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { createRedisHealthStore } from '../../../src/health/redis-health-store.ts';
import { createFlotilla } from '../../../src/index.ts';
import { createEmbeddedExecutor } from '../../../src/store/embedded-executor.ts';
import { migrate } from '../../../src/store/migrate.ts';
import { createStore } from '../../../src/store/store.ts';
import { spawnRedis } from '../../harness/services.ts';
import { waitFor } from '../../harness/wait.ts';

/** A Redis of its own: the test stops it, and the shared one serves every other test. */
type RunningRedis = Awaited<ReturnType<typeof spawnRedis>>;

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  vi.restoreAllMocks();
  for (const c of cleanups.splice(0).reverse()) await c();
});

function capturingLogger() {
  const lines: { level: string; obj: object; msg?: string | undefined }[] = [];
  const at =
    (level: string) =>
    (obj: object, msg?: string): void => {
      lines.push({ level, obj, msg });
    };
  return { lines, logger: { info: at('info'), warn: at('warn'), error: at('error') } };
}

async function timed<T>(fn: () => Promise<T>): Promise<{ ms: number; value: T }> {
  const started = Date.now();
  const value = await fn();
  return { ms: Date.now() - started, value };
}

describe('a Redis outage', () => {
  it('makes the Redis health store ping answer false within 1.5 s, every call', async () => {
    const redis: RunningRedis = await spawnRedis();
    cleanups.push(() => redis.stop());
    const store = createRedisHealthStore({ url: redis.url, keyPrefix: 'outage:', logger: quiet() });
    cleanups.push(() => store.close());
    expect(await store.ping()).toBe(true);
    await redis.stop();
    for (let i = 0; i < 6; i++) {
      const { ms, value } = await timed(() => store.ping());
      expect(value).toBe(false);
      expect(ms).toBeLessThan(1_500);
    }
  });

  it('answers ready() within 1.5 s naming the health store, and logs it as JSON-able lines, never an ioredis stack trace', async () => {
    const redis: RunningRedis = await spawnRedis();
    cleanups.push(() => redis.stop());
    const stderr = vi.spyOn(console, 'error');
    const { lines, logger } = capturingLogger();
    const dataDir = mkdtempSync(join(tmpdir(), 'flotilla-redis-outage-'));
    cleanups.push(async () => rmSync(dataDir, { recursive: true, force: true }));
    const exec = await createEmbeddedExecutor(null);
    await migrate(exec);
    const f = await createFlotilla({
      store: createStore(exec),
      redisUrl: redis.url,
      redisKeyPrefix: 'outage:',
      dataDir,
      proxy: false,
      logger,
    });
    cleanups.push(() => f.close());
    await waitFor(async () => (await f.ready()).ready, { message: 'ready with Redis up' });

    await redis.stop();
    await waitFor(
      () => lines.some((l) => l.level === 'warn' && /routing table publisher/.test(l.msg ?? '')),
      { message: 'the publisher logged the outage' },
    );
    for (let i = 0; i < 6; i++) {
      const { ms, value } = await timed(() => f.ready());
      expect(value.ready).toBe(false);
      expect(value.missing).toContain('health store not answering');
      expect(ms).toBeLessThan(1_500);
    }
    const traces = stderr.mock.calls.filter((c) => String(c[0]).includes('[ioredis] Unhandled'));
    expect(traces).toEqual([]);
    // Once per outage, not once per reconnect attempt.
    const publisherWarnings = lines.filter((l) => /routing table publisher/.test(l.msg ?? ''));
    expect(publisherWarnings).toHaveLength(1);
  });
});

function quiet() {
  const noop = () => {};
  return { debug: noop, info: noop, warn: noop, error: noop };
}
