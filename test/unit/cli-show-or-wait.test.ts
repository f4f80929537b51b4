/**
 * How the commands that change a deployment end (src/cli/wait.ts `showOrWait`, shared by
 * deploy, scale and rm), against a small fake API: without --wait the answer's line (or the view
 * as JSON), with --wait the progress and the verdict; and `--help` through the one parse helper.
 */
import { createServer, type Server } from 'node:http';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { run as rm } from '../../src/cli/commands/rm.ts';
import { run as scale } from '../../src/cli/commands/scale.ts';
import { main } from '../../src/cli/main.ts';
import { output } from '../../src/cli/output.ts';

let server: Server | null = null;

afterEach(async () => {
  output.json = false;
  vi.restoreAllMocks();
  if (server) await new Promise<void>((r) => server!.close(() => r()));
  server = null;
});

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

function view(state: string, replicas: number) {
  return {
    id: 'd1',
    name: 'd',
    state,
    reason: null,
    target_replicas: replicas,
    current_replicas: replicas,
    healthy_replicas: replicas,
    replicas: Array.from({ length: replicas }, (_, i) => ({ id: `d1-r${i}`, state: 'HEALTHY' })),
    routes: [],
  };
}

/** An API whose GET of the deployment answers each of `views` once, then the last one. */
async function fakeApi(answer: unknown, views: unknown[]): Promise<string> {
  let n = 0;
  server = createServer((req, res) => {
    res.writeHead(200, { 'content-type': 'application/json' });
    if (req.method === 'GET') res.end(JSON.stringify(views[Math.min(n++, views.length - 1)]));
    else res.end(JSON.stringify(answer));
  });
  await new Promise<void>((r) => server!.listen(0, '127.0.0.1', () => r()));
  const addr = server.address();
  return `http://127.0.0.1:${typeof addr === 'object' && addr ? addr.port : 0}`;
}

describe('deploy, scale and rm end the same way', () => {
  it('without --wait, prints the command line of the answer, or the view as JSON with --json', async () => {
    const api = await fakeApi(view('RUNNING', 2), []);
    const plain = await capture(() => scale(['d', '2', '--api', api]));
    expect(plain).toMatchObject({ code: 0, stdout: ['d: target 2 replicas'], stderr: [] });
    const json = await capture(() => rm(['d', '--api', api, '--json']));
    expect(json.code).toBe(0);
    expect(JSON.parse(json.stdout[0]!)).toMatchObject({ id: 'd1', state: 'RUNNING' });
  });

  it('with --wait, prints progress until the verdict holds, then the verdict (exit 0)', async () => {
    const api = await fakeApi(view('DESTROYING', 1), [
      view('DESTROYING', 1),
      view('TERMINATED', 0),
    ]);
    const r = await capture(() => rm(['d', '--wait', '--api', api]));
    expect(r.code).toBe(0);
    expect(r.stdout.at(-1)).toBe('d is TERMINATED');
    expect(r.stdout.some((l) => /^\[\s*\d+\.\ds\] d DESTROYING/.test(l))).toBe(true);
  });

  it('with --wait --json, progress goes to stderr and stdout holds only the final view', async () => {
    const api = await fakeApi(view('SCALING', 2), [view('RUNNING', 2)]);
    const r = await capture(() => scale(['d', '2', '--wait', '--json', '--api', api]));
    expect(r.code).toBe(0);
    expect(r.stdout).toHaveLength(1);
    expect(JSON.parse(r.stdout[0]!)).toMatchObject({ state: 'RUNNING', healthy_replicas: 2 });
    expect(r.stderr.some((l) => l.includes('d RUNNING'))).toBe(true);
  });

  it('refuses --timeout 0 before calling the API (exit 2)', async () => {
    const r = await capture(() => rm(['d', '--timeout', '0', '--api', 'http://127.0.0.1:1']));
    expect(r.code).toBe(2);
    expect(r.stderr).toEqual([
      'flotilla rm: --timeout: must be ≥ 1, got "0" (see `flotilla rm --help`)',
    ]);
  });
});

describe('--help', () => {
  it('every command prints its own usage on stdout and exits 0', async () => {
    for (const cmd of ['deploy', 'ls', 'status', 'scale', 'rm', 'logs', 'inspect', 'validate']) {
      const r = await capture(() => main([cmd, '--help']));
      expect(r.code, cmd).toBe(0);
      expect(r.stdout[0], cmd).toMatch(new RegExp(`^usage: flotilla ${cmd}`));
    }
    for (const cmd of ['serve', 'echo-server']) {
      const r = await capture(() => main([cmd, '-h']));
      expect(r.code, cmd).toBe(0);
      expect(r.stdout[0], cmd).toMatch(/^usage: flotilla /);
    }
  });
});
