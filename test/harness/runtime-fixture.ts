/** Builds a Runtime over a real store, a FakeBackend and the in-memory health store. */
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { modelRevisionSpecSchema } from '../../src/domain/revision.ts';
import { DEFAULT_ROUTING } from '../../src/domain/routing.ts';
import type { HealthStore } from '../../src/health/health-store.ts';
import { createMemoryHealthStore } from '../../src/health/memory-health-store.ts';
import type { RuntimeConfig } from '../../src/runtime/config.ts';
import { type CreateDeploymentCommand, Runtime } from '../../src/runtime/runtime.ts';
import { openStore, type Store } from '../../src/store/store.ts';
import { FakeBackend } from './fake-backend.ts';

export type StoreKind = 'postgres' | 'embedded';

export async function openTestStore(
  kind: StoreKind,
  databaseUrl: string,
  dataDir?: string,
): Promise<Store> {
  const dir = dataDir ?? mkdtempSync(join(tmpdir(), 'flotilla-store-'));
  return kind === 'postgres'
    ? openStore({ databaseUrl, dataDir: dir })
    : openStore({ dataDir: dir });
}

export function testRuntime(opts: {
  store: Store;
  backend?: FakeBackend;
  health?: HealthStore;
  config?: Partial<RuntimeConfig>;
}) {
  const backend = opts.backend ?? new FakeBackend();
  const health = opts.health ?? createMemoryHealthStore();
  const runtime = new Runtime({
    store: opts.store,
    backend,
    health,
    config: { healthCheckIntervalS: 3600, evictionIntervalS: 3600, shards: 4, ...opts.config },
  });
  return { runtime, backend, health };
}

export function echoCommand(name: string, replicas: number): CreateDeploymentCommand {
  return {
    name,
    runtime_variant: 'cmd',
    request: { command: ['sleep', '1000'] },
    revision: modelRevisionSpecSchema.parse({
      runtime_variant: 'cmd',
      command: ['sleep', '1000'],
      health_check: { healthy_threshold: 1, unhealthy_threshold: 2, startup_timeout_s: 60 },
    }),
    replicas,
    min_replicas: 0,
    max_replicas: 10,
    routing: DEFAULT_ROUTING,
    scaling_group: 'default',
  };
}

/** Plays the prober: every probe target's result is written as `ready`, then one tick runs. */
export async function reportAll(
  runtime: Runtime,
  health: HealthStore,
  ready = true,
): Promise<void> {
  const now = Date.now();
  for (const t of runtime.probeTargets()) {
    await health.write(
      {
        routeId: t.routeId,
        ready,
        status: ready ? 200 : 500,
        latency_ms: 1,
        checked_at: now,
        consecutive_successes: ready ? 1 : 0,
        consecutive_failures: ready ? 0 : 1,
        error: ready ? null : 'HTTP 500 from /health',
      },
      120,
    );
  }
  await runtime.classifyNow();
}
