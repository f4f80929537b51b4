/**
 * The CLI's papercuts (issue 12 item 7), run in-process: one-line usage errors with a
 * "did you mean", negative numbers refused as such, bare `flotilla` is a usage error, `--json`
 * errors are JSON on stderr, `status` says when it shows only the last N events, and
 * `logs --follow` follows each replica's log on its own.
 */
import { createServer, type Server } from 'node:http';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { reportError } from '../../src/cli/args.ts';
import { LogFollower, run as logs } from '../../src/cli/commands/logs.ts';
import { run as scale } from '../../src/cli/commands/scale.ts';
import { eventsHeading } from '../../src/cli/commands/status.ts';
import { run as validate } from '../../src/cli/commands/validate.ts';
import { didYouMean, editDistance } from '../../src/cli/flags.ts';
import { ApiError } from '../../src/cli/http-client.ts';
import { main } from '../../src/cli/main.ts';
import { output } from '../../src/cli/output.ts';

let server: Server | null = null;

afterEach(async () => {
  output.json = false;
  vi.restoreAllMocks();
  if (server) await new Promise<void>((r) => server!.close(() => r()));
  server = null;
});

/** Runs `fn` with console.error and console.log captured; returns the exit code and lines. */
async function capture(fn: () => Promise<number>) {
  const err = vi.spyOn(console, 'error').mockImplementation(() => {});
  const log = vi.spyOn(console, 'log').mockImplementation(() => {});
  try {
    const code = await fn();
    return {
      code,
      stderr: err.mock.calls.map((c) => String(c[0])),
      stdout: log.mock.calls.map((c) => String(c[0])),
    };
  } finally {
    err.mockRestore();
    log.mockRestore();
  }
}

describe('usage errors', () => {
  it('an unknown flag is one line with the nearest flag: --nmae -> --name', async () => {
    const r = await capture(() => main(['deploy', 'examples/echo', '--nmae', 'x']));
    expect(r.code).toBe(2);
    expect(r.stderr).toEqual([
      'flotilla deploy: unknown option --nmae (did you mean --name?) (see `flotilla deploy --help`)',
    ]);
  });

  it('an unknown command is one line with the nearest command', async () => {
    const r = await capture(() => main(['sttaus', 'echo']));
    expect(r.code).toBe(2);
    expect(r.stderr).toEqual([
      'flotilla: unknown command "sttaus" (did you mean "status"?); run `flotilla --help` for the commands',
    ]);
  });

  it('an unknown flag of serve and validate gets the nearest flag too', async () => {
    const s = await capture(() => main(['serve', '--api-prot', '0']));
    expect(s.code).toBe(2);
    expect(s.stderr).toEqual([expect.stringContaining('did you mean --api-port?')]);
    const v = await capture(() => validate(['x', '--varaint', 'cmd']));
    expect(v.code).toBe(2);
    expect(v.stderr).toEqual([expect.stringContaining('did you mean --variant?')]);
  }, 60_000);

  it('scale x -1 says the count must be ≥ 0 instead of "unknown option -1"', async () => {
    const r = await capture(() => scale(['x', '-1']));
    expect(r.code).toBe(2);
    expect(r.stderr).toEqual([
      'flotilla scale: replicas: must be ≥ 0, got -1 (see `flotilla scale --help`)',
    ]);
    const d = await capture(() => main(['deploy', 'f', '--name', 'n', '--replicas', '-2']));
    expect(d.stderr).toEqual([expect.stringContaining('--replicas: must be ≥ 0, got -2')]);
  });

  it('bare flotilla prints the usage on stderr and exits 2', async () => {
    const r = await capture(() => main([]));
    expect(r.code).toBe(2);
    expect(r.stdout).toEqual([]);
    expect(r.stderr.join('\n')).toMatch(/usage: flotilla <command>/);
  });

  it('did-you-mean counts a swap of two letters as one edit and ignores far guesses', () => {
    expect(editDistance('nmae', 'name')).toBe(1);
    expect(didYouMean('--nmae', ['--name', '--wait', '--json'])).toBe('--name');
    expect(didYouMean('--zzzzzz', ['--name', '--wait'])).toBeUndefined();
  });
});

describe('--json errors', () => {
  it('a usage error with --json is one JSON error body on stderr', async () => {
    const r = await capture(() => main(['ls', '--json', '--bogus']));
    expect(r.code).toBe(2);
    expect(r.stderr).toHaveLength(1);
    expect(JSON.parse(r.stderr[0]!)).toEqual({
      error: {
        code: 'usage',
        message: 'unknown option --bogus',
        details: [{ path: 'ls', message: 'unknown option --bogus' }],
      },
    });
  });

  it('--json before the command counts as global: flotilla --json ls --bogus', async () => {
    const r = await capture(() => main(['--json', 'ls', '--bogus']));
    expect(r.code).toBe(2);
    expect(JSON.parse(r.stderr[0]!).error).toMatchObject({
      code: 'usage',
      message: 'unknown option --bogus',
    });
  });

  it('an API error with --json keeps its code and details', async () => {
    output.json = true;
    const err = vi.spyOn(console, 'error').mockImplementation(() => {});
    const e = new ApiError(409, 'conflict', 'taken', [{ path: 'name', message: 'taken' }]);
    expect(reportError('deploy', e)).toBe(1);
    expect(JSON.parse(String(err.mock.calls[0]?.[0]))).toEqual({
      error: { code: 'conflict', message: 'taken', details: [{ path: 'name', message: 'taken' }] },
    });
  });

  it('validate --json is accepted and a bad definition is a JSON error on stderr', async () => {
    const r = await capture(() =>
      validate(['test/fixtures/definitions/cmd-echo', '--variant', 'nope', '--json']),
    );
    expect(r.code).toBe(1);
    const body = JSON.parse(r.stderr.join('\n'));
    expect(body.error.code).toBe('validation');
    expect(body.error.details.length).toBeGreaterThan(0);
  });
});

describe('status', () => {
  it('says when it shows only the last N events', () => {
    expect(eventsHeading(10, 57)).toBe('recent events (last 10 of 57; --events N shows more):');
    expect(eventsHeading(4, 4)).toBe('recent events:');
  });
});

describe('logs --follow', () => {
  it('prints only the line a replica added, not the other replicas\u2019 output again', async () => {
    const logsOf = new Map([
      ['r1', 'a1\n'],
      ['r2', 'b1\n'],
    ]);
    const f = new LogFollower(async (id) => logsOf.get(id) ?? null, true);
    expect(await f.poll(['r1', 'r2'])).toBe('[r1] a1\n[r2] b1\n');
    logsOf.set('r1', 'a1\na2\n');
    expect(await f.poll(['r1', 'r2'])).toBe('[r1] a2\n');
    expect(await f.poll(['r1', 'r2'])).toBe('');
    logsOf.set('r2', 'b1\nb2 par');
    expect(await f.poll(['r1', 'r2'])).toBe('');
    logsOf.set('r2', 'b1\nb2 partial\n');
    expect(await f.poll(['r1', 'r2'])).toBe('[r2] b2 partial\n');
  });

  it('flotilla logs NAME --follow against an API with two replicas prints each new line once', async () => {
    const logsOf = new Map([
      ['d-r1', 'one\n'],
      ['d-r2', 'two\n'],
    ]);
    let logRequests = 0;
    server = createServer((req, res) => {
      const url = new URL(req.url ?? '/', 'http://x');
      if (url.pathname === '/v1/deployments/d') {
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(
          JSON.stringify({
            id: 'd',
            name: 'd',
            replicas: [
              { id: 'd-r1', state: 'HEALTHY' },
              { id: 'd-r2', state: 'HEALTHY' },
            ],
          }),
        );
        return;
      }
      if (url.pathname === '/v1/deployments/d/logs') {
        const replica = url.searchParams.get('replica');
        // What the server answers without ?replica= (every replica, prefixed, concatenated).
        const text = replica
          ? (logsOf.get(replica) ?? '')
          : [...logsOf]
              .map(([id, t]) =>
                t
                  .split('\n')
                  .filter(Boolean)
                  .map((l) => `[${id}] ${l}`)
                  .join('\n'),
              )
              .join('\n');
        logRequests++;
        if (logRequests === 3) logsOf.set('d-r1', 'one\nthree\n');
        res.writeHead(200, { 'content-type': 'text/plain' });
        res.end(text);
        return;
      }
      res.writeHead(404, { 'content-type': 'application/json' });
      res.end('{"error":{"code":"not_found","message":"no","details":[]}}');
    });
    await new Promise<void>((r) => server!.listen(0, '127.0.0.1', () => r()));
    const addr = server.address();
    const api = `http://127.0.0.1:${typeof addr === 'object' && addr ? addr.port : 0}`;
    let written = '';
    vi.spyOn(process.stdout, 'write').mockImplementation((chunk: string | Uint8Array) => {
      written += String(chunk);
      if (written.includes('three')) setImmediate(() => process.emit('SIGINT', 'SIGINT'));
      return true;
    });
    const started = Date.now();
    const code = await logs(['d', '--follow', '--api', api]);
    expect(code).toBe(0);
    expect(Date.now() - started).toBeLessThan(20_000);
    const lines = written.split('\n').filter(Boolean);
    expect(lines.filter((l) => l.endsWith('one'))).toHaveLength(1);
    expect(lines.filter((l) => l.endsWith('two'))).toHaveLength(1);
    expect(lines.filter((l) => l.endsWith('three'))).toEqual(['[d-r1] three']);
  });
});
