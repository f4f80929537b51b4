import { describe, expect, it } from 'vitest';
import { replicaConcurrencyOf } from '../../../src/domain/replica-concurrency.ts';
import { DEFAULT_ROUTING, type DeploymentRoutes } from '../../../src/domain/routing.ts';
import type { SessionSpec } from '../../../src/domain/session.ts';
import {
  ADMISSION_PROFILES,
  resolveAdmissionConfig,
  splitShare,
} from '../../../src/proxy/admission.ts';
import { buildDeploymentRouting } from '../../../src/runtime/routing-table-builder.ts';

const base: DeploymentRoutes = {
  deploymentId: 'd',
  name: 'd',
  routing: { strategy: 'round_robin', request_timeout_s: 60, retries: 2 },
  routes: [],
};

const session = (runtime_variant: string, command: string[], environ = {}) => ({
  runtime_variant,
  command,
  environ,
});

describe('per-variant replica concurrency', () => {
  it('uses each runtime default when its command does not set the flag', () => {
    expect(replicaConcurrencyOf(session('vllm', ['vllm', 'serve', 'm']))).toEqual({
      max_concurrent_requests: 256,
      max_limit: 256,
      source: 'default',
    });
    expect(
      replicaConcurrencyOf(session('huggingface-tgi', ['text-generation-launcher']))
        .max_concurrent_requests,
    ).toBe(128);
    expect(replicaConcurrencyOf(session('sglang', ['python3'])).max_concurrent_requests).toBe(128);
    expect(replicaConcurrencyOf(session('modular-max', ['max'])).max_concurrent_requests).toBe(32);
    expect(replicaConcurrencyOf(session('nim', ['/opt/nim/start_server.sh'])).source).toBe(
      'assumed',
    );
    expect(replicaConcurrencyOf(session('cmd', ['python', 'app.py']))).toEqual({
      max_concurrent_requests: 8,
      max_limit: 128,
      source: 'conservative',
    });
  });

  it('reads the flag the command sets, in both spellings, the last one winning', () => {
    expect(
      replicaConcurrencyOf(session('vllm', ['vllm', 'serve', 'm', '--max-num-seqs', '64'])),
    ).toEqual({ max_concurrent_requests: 64, max_limit: 64, source: 'flag --max-num-seqs' });
    expect(
      replicaConcurrencyOf(
        session('huggingface-tgi', [
          'x',
          '--max-concurrent-requests=40',
          '--max-concurrent-requests',
          '50',
        ]),
      ).max_concurrent_requests,
    ).toBe(50);
    expect(
      replicaConcurrencyOf(session('sglang', ['x', '--max-running-requests', '12']))
        .max_concurrent_requests,
    ).toBe(12);
    expect(
      replicaConcurrencyOf(session('modular-max', ['max', 'serve', '--max-batch-size', '16']))
        .max_concurrent_requests,
    ).toBe(16);
    // cmd may run any of them: a known runtime flag in its argv counts.
    expect(
      replicaConcurrencyOf(session('cmd', ['vllm', 'serve', 'm', '--max-num-seqs=100'])),
    ).toMatchObject({ max_concurrent_requests: 100, source: 'flag --max-num-seqs' });
  });

  it('reads TGI environment variable and ignores values that are not positive integers', () => {
    expect(
      replicaConcurrencyOf(session('huggingface-tgi', ['x'], { MAX_CONCURRENT_REQUESTS: '20' })),
    ).toMatchObject({ max_concurrent_requests: 20, source: 'env MAX_CONCURRENT_REQUESTS' });
    expect(replicaConcurrencyOf(session('vllm', ['vllm', '--max-num-seqs', 'lots'])).source).toBe(
      'default',
    );
    expect(replicaConcurrencyOf(session('vllm', ['vllm', '--max-num-seqs', '0'])).source).toBe(
      'default',
    );
  });
});

describe('admission settings resolution', () => {
  const vllm = {
    ...base,
    replica_concurrency: { max_concurrent_requests: 256, max_limit: 256, source: 'default' },
  };

  it('takes the replica concurrency from the table when nothing overrides it', () => {
    expect(resolveAdmissionConfig(vllm).max_concurrent_requests).toBe(256);
  });

  it('a profile sets its three values; explicit fields win over it', () => {
    const medium = resolveAdmissionConfig({ ...vllm, admission: { profile: 'medium' } });
    expect(medium).toMatchObject(ADMISSION_PROFILES.medium);
    expect(medium).toMatchObject({
      request_timeout_s: 90,
      max_queue_size: 100,
      max_concurrent_requests: 8,
    });
    const large = resolveAdmissionConfig({
      ...vllm,
      admission: { profile: 'large', max_queue_size: 7 },
    });
    expect(large).toMatchObject({
      request_timeout_s: 120,
      max_queue_size: 7,
      max_concurrent_requests: 16,
    });
    expect(resolveAdmissionConfig({ ...vllm, admission: { profile: 'small' } })).toMatchObject({
      max_concurrent_requests: 3,
      max_queue_size: 50,
    });
  });

  it('adaptive mode bounds each replica by the variant maximum (or the explicit value)', () => {
    const cmd = {
      ...base,
      replica_concurrency: { max_concurrent_requests: 8, max_limit: 128, source: 'conservative' },
    };
    expect(resolveAdmissionConfig({ ...cmd, admission: { mode: 'adaptive' } })).toMatchObject({
      mode: 'adaptive',
      max_concurrent_requests: 128,
    });
    expect(resolveAdmissionConfig(cmd)).toMatchObject({
      mode: 'fixed',
      max_concurrent_requests: 8,
    });
    expect(
      resolveAdmissionConfig({
        ...cmd,
        admission: { mode: 'adaptive', max_concurrent_requests: 40 },
      }).max_concurrent_requests,
    ).toBe(40);
  });

  it('splits concurrency and queue over proxy workers so the parts sum to the whole', () => {
    const parts = [0, 1, 2].map((index) =>
      resolveAdmissionConfig(
        { ...base, admission: { max_concurrent_requests: 10, max_queue_size: 50 } },
        { index, count: 3 },
      ),
    );
    expect(parts.map((p) => p.max_concurrent_requests)).toEqual([4, 3, 3]);
    expect(parts.map((p) => p.max_queue_size)).toEqual([17, 17, 16]);
    // Never below one slot per worker (a worker with none could serve nothing).
    expect(splitShare(1, { index: 1, count: 2 }, 1)).toBe(1);
    expect(splitShare(9, undefined, 1)).toBe(9);
  });
});

describe('routing table', () => {
  it('carries the tightest replica concurrency of the revisions its routes run', () => {
    const replica = (n: number, revisionId: string) => ({
      revisionId,
      state: 'HEALTHY' as const,
      routeId: `t${n}`,
      routeState: 'HEALTHY' as const,
      endpoint: `http://127.0.0.1:${9000 + n}`,
      leaving: false,
      seq: n,
    });
    const sessions: Record<string, SessionSpec> = {
      old: {
        runtime_variant: 'vllm',
        command: ['vllm', 'serve', 'm'],
        environ: {},
      } as unknown as SessionSpec,
      new: {
        runtime_variant: 'vllm',
        command: ['vllm', 'serve', 'm', '--max-num-seqs', '48'],
        environ: {},
      } as unknown as SessionSpec,
    };
    const { entry } = buildDeploymentRouting(
      { id: 'd', name: 'd', routing: DEFAULT_ROUTING },
      { replicas: { r1: replica(1, 'old'), r2: replica(2, 'new') } },
      (rev) => sessions[rev],
    );
    expect(entry.replica_concurrency).toEqual({
      max_concurrent_requests: 48,
      max_limit: 48,
      source: 'flag --max-num-seqs',
    });
    expect(resolveAdmissionConfig(entry).max_concurrent_requests).toBe(48);
  });
});
