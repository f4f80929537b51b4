/**
 * The rules the embedded and HTTP APIs share, each tested alone: replica bounds and the
 * default max_replicas, endpoint names, redaction, named errors and the error body.
 */
import { describe, expect, it } from 'vitest';
import { mergeUpdateRequest, revisionSourceOf } from '../../../src/domain/deployment-request.ts';
import { assertEndpointNameFree } from '../../../src/domain/endpoint-names.ts';
import {
  deploymentNotFound,
  errorBody,
  FlotillaError,
  invalidState,
  validationError,
} from '../../../src/domain/errors.ts';
import { redactEnviron, redactRevisionAndSession } from '../../../src/domain/redaction.ts';
import {
  assertDeploymentReplicaBounds,
  assertReplicaBounds,
  DEFAULT_MAX_REPLICAS,
  defaultMaxReplicas,
  requestedReplicaBounds,
} from '../../../src/domain/replica-bounds.ts';

function thrown(fn: () => unknown): FlotillaError {
  try {
    fn();
  } catch (err) {
    if (err instanceof FlotillaError) return err;
    throw err;
  }
  throw new Error('expected a FlotillaError');
}

describe('replica bounds', () => {
  it('max_replicas defaults to the requested count, at least 10', () => {
    expect(DEFAULT_MAX_REPLICAS).toBe(10);
    expect(defaultMaxReplicas(0)).toBe(10);
    expect(defaultMaxReplicas(25)).toBe(25);
  });

  it('takes top-level bounds first, then the scaling policy, then the defaults', () => {
    expect(requestedReplicaBounds({ replicas: 2 })).toEqual({
      replicas: 2,
      min_replicas: 0,
      max_replicas: 10,
    });
    expect(
      requestedReplicaBounds({ replicas: 2, scaling_policy: { min_replicas: 1, max_replicas: 4 } }),
    ).toEqual({ replicas: 2, min_replicas: 1, max_replicas: 4 });
    expect(
      requestedReplicaBounds({
        replicas: 2,
        min_replicas: 2,
        max_replicas: 3,
        scaling_policy: { min_replicas: 1, max_replicas: 4 },
      }),
    ).toEqual({ replicas: 2, min_replicas: 2, max_replicas: 3 });
  });

  it('accepts an integer within the bounds and refuses others at replicas', () => {
    expect(() =>
      assertReplicaBounds({ replicas: 3, min_replicas: 1, max_replicas: 3 }),
    ).not.toThrow();
    for (const replicas of [0, 4, 1.5, Number.NaN]) {
      const err = thrown(() => assertReplicaBounds({ replicas, min_replicas: 1, max_replicas: 3 }));
      expect(err.code).toBe('validation');
      expect(err.message).toBe('replicas must be an integer from 1 to 3');
      expect(err.details).toEqual([
        {
          path: 'replicas',
          message: `expected an integer from 1 to 3, got ${JSON.stringify(replicas)}`,
        },
      ]);
    }
  });

  it("a new deployment's bounds name each inconsistency at its field", () => {
    const err = thrown(() =>
      assertDeploymentReplicaBounds({ replicas: 5, min_replicas: 3, max_replicas: 2 }),
    );
    expect(err.details).toEqual([
      { path: 'min_replicas', message: 'must not exceed max_replicas (2)' },
      { path: 'replicas', message: 'must not exceed max_replicas (2)' },
    ]);
    expect(err.message).toBe(
      'min_replicas: must not exceed max_replicas (2); replicas: must not exceed max_replicas (2)',
    );
    expect(
      thrown(() => assertDeploymentReplicaBounds({ replicas: 0, min_replicas: 1, max_replicas: 2 }))
        .details,
    ).toEqual([{ path: 'replicas', message: 'must be at least min_replicas (1)' }]);
  });
});

describe('endpoint names', () => {
  const taken = { liveDeployments: ['echo'], endpoints: ['split'] };
  it('creating refuses an existing endpoint and a live deployment, both 409 at name', () => {
    for (const name of ['split', 'echo']) {
      const err = thrown(() => assertEndpointNameFree(name, { ...taken, mode: 'create' }));
      expect(err.status).toBe(409);
      expect(err.details[0]?.path).toBe('name');
    }
    expect(() => assertEndpointNameFree('new', { ...taken, mode: 'create' })).not.toThrow();
  });

  it('replacing allows an existing endpoint but not a live deployment', () => {
    expect(() => assertEndpointNameFree('split', { ...taken, mode: 'replace' })).not.toThrow();
    expect(thrown(() => assertEndpointNameFree('echo', { ...taken, mode: 'replace' })).code).toBe(
      'conflict',
    );
  });
});

describe('redaction', () => {
  it('redacts the environment of both the revision and the session, nothing else', () => {
    const view = {
      id: 'd1',
      revision: { environ: { HF_TOKEN: 'secret', MODEL: 'm' }, port: 1 },
      session: { environ: { DB_PASSWORD: 'pw' }, command: ['x'] },
    };
    expect(redactRevisionAndSession(view)).toEqual({
      id: 'd1',
      revision: { environ: { HF_TOKEN: '***', MODEL: 'm' }, port: 1 },
      session: { environ: { DB_PASSWORD: '***' }, command: ['x'] },
    });
    expect(view.revision.environ.HF_TOKEN).toBe('secret');
    expect(redactRevisionAndSession({ revision: null, session: null })).toEqual({
      revision: null,
      session: null,
    });
    expect(redactEnviron(undefined)).toBeUndefined();
  });
});

describe('named errors', () => {
  it('build the same message and detail wherever they are thrown', () => {
    expect(deploymentNotFound('x')).toMatchObject({
      code: 'not_found',
      status: 404,
      message: 'deployment "x" not found',
      details: [{ path: 'id', message: 'no deployment with id or name "x"' }],
    });
    expect(validationError('a.b', 'bad')).toMatchObject({
      status: 400,
      message: 'a.b: bad',
      details: [{ path: 'a.b', message: 'bad' }],
    });
    expect(invalidState('no', 'because')).toMatchObject({
      status: 409,
      details: [{ path: 'state', message: 'because' }],
    });
  });

  it('an error body always has at least one detail', () => {
    expect(errorBody(new FlotillaError('internal', 'boom')).error.details).toEqual([
      { path: '(request)', message: 'boom' },
    ]);
  });
});

describe('request to revision', () => {
  it('hands revision generation only the revision fields, as the highest layer', () => {
    expect(
      revisionSourceOf(
        { name: 'x', replicas: 2, model_path: 'm', command: 'c', environ: { A: 'b' } },
        'cmd',
      ),
    ).toEqual({
      runtime_variant: 'cmd',
      model_path: 'm',
      service_definition: undefined,
      request: { command: 'c', environ: { A: 'b' } },
    });
  });

  it('an update keeps stored fields the caller did not send, zod defaults included', () => {
    const stored = { runtime_variant: 'vllm', command: 'old', environ: { A: '1' } };
    const sent = { environ: { A: '2' } };
    const parsed = { runtime_variant: 'cmd', environ: { A: '2' } };
    expect(mergeUpdateRequest(stored, sent, parsed)).toEqual({
      runtime_variant: 'vllm',
      command: 'old',
      environ: { A: '2' },
    });
  });
});
