import { describe, expect, it } from 'vitest';
import { toStoreError as fromPglite } from '../../../src/store/embedded-executor.ts';
import {
  createPostgresExecutor,
  toStoreError as fromPg,
} from '../../../src/store/postgres-executor.ts';
import { violatedConstraint } from '../../../src/store/sql-executor.ts';

const pgError = (code: string, extra: Record<string, string> = {}) =>
  Object.assign(new Error(`sqlstate ${code}`), { code, ...extra });

describe.each([
  ['pg', fromPg],
  ['PGlite', fromPglite],
])('%s errors become FlotillaErrors', (_name, toStoreError) => {
  it('a unique violation is a 409 conflict naming the constraint', () => {
    const cause = pgError('23505', {
      constraint: 'deployments_live_name_key',
      detail: 'Key (name)=(x) already exists.',
    });
    const err = toStoreError(cause);
    expect(err).toMatchObject({ code: 'conflict', status: 409, retryable: false });
    expect(err.message).toContain('deployments_live_name_key');
    expect(err.details).toEqual([
      { path: 'deployments_live_name_key', message: 'Key (name)=(x) already exists.' },
    ]);
    expect(violatedConstraint(err)).toBe('deployments_live_name_key');
    expect(err.cause).toBe(cause);
  });

  it('serialization failures and deadlocks are retryable conflicts', () => {
    expect(toStoreError(pgError('40001'))).toMatchObject({ code: 'conflict', retryable: true });
    expect(toStoreError(pgError('40P01'))).toMatchObject({ code: 'conflict', retryable: true });
  });

  it('a server going away is a retryable 503', () => {
    for (const code of ['57P01', '08006', '53300']) {
      expect(toStoreError(pgError(code))).toMatchObject({
        code: 'store_unavailable',
        status: 503,
        retryable: true,
      });
    }
  });

  it('bad values are 400 and anything else is internal', () => {
    expect(toStoreError(pgError('22P02'))).toMatchObject({ code: 'validation', status: 400 });
    expect(toStoreError(pgError('42P01'))).toMatchObject({ code: 'internal', status: 500 });
    expect(toStoreError(new Error('boom'))).toMatchObject({ code: 'internal' });
  });
});

describe('PostgreSQL executor', () => {
  it('an unreachable server is store_unavailable, retryable', async () => {
    // Port 1 on loopback: nothing listens there, the connection is refused at once.
    const exec = createPostgresExecutor('postgres://flotilla@127.0.0.1:1/flotilla');
    try {
      await expect(exec.query('SELECT 1')).rejects.toMatchObject({
        code: 'store_unavailable',
        retryable: true,
      });
      await expect(exec.transaction(async () => 1)).rejects.toMatchObject({
        code: 'store_unavailable',
      });
    } finally {
      await exec.close();
    }
  });

  it('socket errors without a SQLSTATE are retryable 503s', () => {
    const refused = Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED' });
    expect(fromPg(refused)).toMatchObject({ code: 'store_unavailable', retryable: true });
    expect(fromPg(new Error('Connection terminated unexpectedly'))).toMatchObject({
      code: 'store_unavailable',
      retryable: true,
    });
  });
});
