import { describe, expect, it } from 'vitest';
import { DEFAULT_ROUTING } from '../../src/domain/routing.ts';
import { optionsOf } from '../../src/runtime/deployment-options.ts';
import type { DeploymentRecord } from '../../src/store/store.ts';

const record = (spec: unknown, target_replicas = 2): DeploymentRecord => ({
  id: 'd',
  name: 'm',
  runtime_variant: 'cmd',
  spec,
  revision_id: 'r',
  target_replicas,
  state: 'RUNNING',
  reason: null,
  created_at: '',
  updated_at: '',
  deleted_at: null,
  last_scaled_at: null,
});

describe('deployment options from a stored spec', () => {
  it('reads what the spec says', () => {
    const o = optionsOf(
      record({
        min_replicas: 1,
        max_replicas: 6,
        routing: { strategy: 'weighted', retries: 0 },
        admission: { max_concurrent_requests: 4 },
        scaling_group: 'gpu',
        scaling_policy: { cooldown_period: 30 },
      }),
    );
    expect(o).toEqual({
      replicas: 2,
      min_replicas: 1,
      max_replicas: 6,
      routing: { ...DEFAULT_ROUTING, strategy: 'weighted', retries: 0 },
      admission: { max_concurrent_requests: 4 },
      scaling_group: 'gpu',
      scaling_policy: { cooldown_period: 30 },
    });
  });

  it('gives the defaults of what it does not say (max_replicas: at least 10)', () => {
    expect(optionsOf(record(null, 3))).toEqual({
      replicas: 3,
      min_replicas: 0,
      max_replicas: 10,
      routing: DEFAULT_ROUTING,
      admission: undefined,
      scaling_group: 'default',
      scaling_policy: undefined,
    });
    expect(optionsOf(record({}, 12)).max_replicas).toBe(12);
  });

  it('falls back to the default of a field of the wrong type instead of failing', () => {
    const o = optionsOf(record({ min_replicas: 'two', routing: 'fast', scaling_group: 7 }));
    expect(o.min_replicas).toBe(0);
    expect(o.routing).toEqual(DEFAULT_ROUTING);
    expect(o.scaling_group).toBe('default');
  });
});
