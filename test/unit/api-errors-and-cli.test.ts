import { createServer, type Server } from 'node:http';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { bearerChecker } from '../../src/api/auth.ts';
import { errorBody, toFlotillaError } from '../../src/api/error-handler.ts';
import { createMetrics } from '../../src/api/metrics.ts';
import { reportError } from '../../src/cli/args.ts';
import { newOutput } from '../../src/cli/commands/logs.ts';
import { age, table } from '../../src/cli/format.ts';
import { ApiError, createClient, NoServerError } from '../../src/cli/http-client.ts';
import { FlotillaError } from '../../src/domain/errors.ts';
import { redactEnviron } from '../../src/index.ts';

let server: Server | null = null;
afterEach(async () => {
  vi.restoreAllMocks();
  await new Promise<void>((r) => (server ? server.close(() => r()) : r()));
  server = null;
});

function fastifyError(code: string, statusCode: number, message = code) {
  return Object.assign(new Error(message), { code, statusCode });
}

describe('error mapping', () => {
  it.each([
    ['FST_ERR_CTP_BODY_TOO_LARGE', 413, 413, 'payload_too_large', '(body)'],
    ['FST_ERR_CTP_INVALID_MEDIA_TYPE', 415, 415, 'unsupported_media_type', 'content-type'],
    ['FST_ERR_CTP_EMPTY_JSON_BODY', 400, 400, 'validation', '(body)'],
    ['FST_ERR_CTP_INVALID_JSON_BODY', 400, 400, 'validation', '(body)'],
    ['FST_ERR_NOT_FOUND', 404, 404, 'not_found', '(url)'],
    ['FST_ERR_SOMETHING_NEW', 405, 405, 'validation', '(request)'],
  ])('%s -> %i %s', (code, given, status, flotillaCode, path) => {
    const e = toFlotillaError(fastifyError(code, given), 1024);
    expect(e.status).toBe(status);
    expect(e.code).toBe(flotillaCode);
    expect(e.details[0]?.path).toBe(path);
  });

  it('a JSON SyntaxError is a validation error on the body', () => {
    const e = toFlotillaError(
      Object.assign(new SyntaxError('Unexpected token'), { statusCode: 400 }),
      1,
    );
    expect(e.code).toBe('validation');
    expect(e.details).toEqual([{ path: '(body)', message: 'invalid JSON: Unexpected token' }]);
  });

  it('an unknown error is a 500 that does not leak its message', () => {
    const e = toFlotillaError(new Error('password=hunter2 in a stack'), 1);
    expect(e.status).toBe(500);
    expect(JSON.stringify(errorBody(e))).not.toContain('hunter2');
  });

  it('keeps a FlotillaError and always gives at least one detail', () => {
    const e = new FlotillaError('invalid_state', 'nope');
    expect(toFlotillaError(e, 1)).toBe(e);
    expect(errorBody(e)).toEqual({
      error: {
        code: 'invalid_state',
        message: 'nope',
        details: [{ path: '(request)', message: 'nope' }],
      },
    });
  });
});

describe('bearer token', () => {
  const check = bearerChecker('s3cret-token');
  it('accepts the token, 401 without one, 403 with a wrong one', () => {
    expect(() => check('Bearer s3cret-token')).not.toThrow();
    expect(() => check('bearer s3cret-token')).not.toThrow();
    for (const h of [undefined, '', 'Basic abc', 'Bearer', 's3cret-token']) {
      expect(() => check(h)).toThrow(
        expect.objectContaining({ code: 'unauthorized', status: 401 }),
      );
    }
    for (const h of ['Bearer s3cret-toke', 'Bearer s3cret-token2', 'Bearer x']) {
      expect(() => check(h)).toThrow(expect.objectContaining({ code: 'forbidden', status: 403 }));
    }
  });
});

describe('metrics', () => {
  it('counts health checks by result and snapshot flushes in seconds', async () => {
    const m = createMetrics({ defaultMetrics: false });
    const rec = {
      routeId: 'r',
      latency_ms: 1,
      checked_at: 0,
      consecutive_successes: 0,
      consecutive_failures: 0,
      error: null,
    };
    m.healthCheck({ ...rec, ready: true, status: 200 });
    m.healthCheck({ ...rec, ready: false, status: 503 });
    m.healthCheck({ ...rec, ready: false, status: null });
    m.observeFlush(12, 3);
    m.scalingEvent('down', 'api');
    const text = await m.text();
    expect(text).toContain('flotilla_health_checks_total{result="passed"} 1');
    expect(text).toContain('flotilla_health_checks_total{result="failed"} 1');
    expect(text).toContain('flotilla_health_checks_total{result="error"} 1');
    expect(text).toContain('flotilla_snapshot_write_seconds_bucket{le="0.025"} 1');
    expect(text).toContain('flotilla_snapshot_writes_total 3');
    expect(text).toContain('flotilla_scaling_events_total{direction="down",source="api"} 1');
  });
});

describe('secret redaction', () => {
  it('hides values whose names look like keys, tokens or passwords, and only those', () => {
    expect(
      redactEnviron({
        OPENAI_API_KEY: 'a',
        HF_TOKEN: 'b',
        DB_PASSWORD: 'c',
        SECRET_KEY_BASE: 'd',
        ECHO_TOKEN_LATENCY_MS: '20',
        TOKENIZER_PATH: '/t',
        MONKEY: 'e',
      }),
    ).toEqual({
      OPENAI_API_KEY: '***',
      HF_TOKEN: '***',
      DB_PASSWORD: '***',
      SECRET_KEY_BASE: '***',
      ECHO_TOKEN_LATENCY_MS: '20',
      TOKENIZER_PATH: '/t',
      MONKEY: 'e',
    });
  });
});

describe('CLI helpers', () => {
  it('prints aligned tables', () => {
    expect(
      table(
        ['NAME', 'STATE'],
        [
          ['echo', 'RUNNING'],
          ['a-long-name', 'PENDING'],
        ],
      ),
    ).toBe('NAME         STATE\necho         RUNNING\na-long-name  PENDING');
  });

  it('prints ages in the largest fitting unit', () => {
    const now = Date.parse('2026-01-02T00:00:00Z');
    expect(age('2026-01-01T23:59:30Z', now)).toBe('30s');
    expect(age('2026-01-01T23:50:00Z', now)).toBe('10m');
    expect(age('2026-01-01T18:00:00Z', now)).toBe('6h');
    expect(age('2025-12-20T00:00:00Z', now)).toBe('13d');
  });

  it('logs --follow prints only what a moving tail window added', () => {
    expect(newOutput('', 'a\nb\n')).toBe('a\nb\n');
    expect(newOutput('a\nb\n', 'a\nb\nc\n')).toBe('c\n');
    expect(newOutput('a\nb\nc\n', 'b\nc\nd\n')).toBe('d\n');
    expect(newOutput('x\n', 'x\n')).toBe('');
    expect(newOutput('gone\n', 'new\n')).toBe('new\n');
  });
});

describe('HTTP client', () => {
  async function serveOnce(status: number, body: string): Promise<string> {
    server = createServer((_req, res) => {
      res.writeHead(status, { 'content-type': 'application/json' });
      res.end(body);
    });
    await new Promise<void>((r) => server!.listen(0, '127.0.0.1', () => r()));
    const addr = server.address();
    return `http://127.0.0.1:${typeof addr === 'object' && addr ? addr.port : 0}`;
  }

  it('turns an error body into ApiError with its code and details', async () => {
    const api = await serveOnce(
      409,
      JSON.stringify({
        error: {
          code: 'conflict',
          message: 'taken',
          details: [{ path: 'name', message: 'taken' }],
        },
      }),
    );
    const err = await createClient({ api, token: 't' })
      .get('/v1/x')
      .catch((e) => e);
    expect(err).toBeInstanceOf(ApiError);
    expect(err).toMatchObject({ status: 409, code: 'conflict', details: [{ path: 'name' }] });
  });

  it('says when the server is not a Flotilla API', async () => {
    const api = await serveOnce(200, '<html>');
    const err = await createClient({ api, token: undefined })
      .get('/v1/x')
      .catch((e) => e);
    expect(err).toMatchObject({ code: 'unexpected_response' });
  });

  it('reports a closed port as one line naming the URL, exit 1', async () => {
    const api = await serveOnce(200, '{}');
    await new Promise<void>((r) => server!.close(() => r()));
    server = null;
    const err = await createClient({ api, token: undefined })
      .get('/v1/x')
      .catch((e) => e);
    expect(err).toBeInstanceOf(NoServerError);
    const out = vi.spyOn(console, 'error').mockImplementation(() => {});
    expect(reportError('ls', err)).toBe(1);
    expect(out.mock.calls).toEqual([
      [`flotilla: no Flotilla API answers at ${api} (is \`flotilla serve\` running?)`],
    ]);
  });
});
