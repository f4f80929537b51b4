import { type ChildProcess, spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import TOML from '@iarna/toml';
import OpenAI from 'openai';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { createProcessBackend } from '../../src/backends/process-backend.ts';
import { splitCommand } from '../../src/revision/split-command.ts';
import {
  httpStatus,
  isAlive,
  REPO_ROOT,
  sessionSpec,
  tempDir,
  waitFor,
} from './backends/helpers.ts';

const running: ChildProcess[] = [];
const pids: number[] = [];
afterEach(() => {
  for (const c of running.splice(0)) {
    if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  }
});
afterAll(async () => {
  await waitFor(
    'every echo-server process to be gone',
    () => pids.every((p) => !isAlive(p)),
    10_000,
  );
});

interface Cli {
  child: ChildProcess;
  output: () => string;
  exited: Promise<{ code: number | null; signal: string | null }>;
}

function runCli(args: string[], env: Record<string, string> = {}): Cli {
  const child = spawn(process.execPath, ['bin/flotilla.js', 'echo-server', ...args], {
    cwd: REPO_ROOT,
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  running.push(child);
  if (child.pid) pids.push(child.pid);
  let out = '';
  child.stdout!.on('data', (d: Buffer) => {
    out += d.toString();
  });
  child.stderr!.on('data', (d: Buffer) => {
    out += d.toString();
  });
  const exited = new Promise<{ code: number | null; signal: string | null }>((resolve) =>
    child.once('exit', (code, signal) => resolve({ code, signal })),
  );
  return { child, output: () => out, exited };
}

async function listeningPort(cli: Cli): Promise<number> {
  const m = await waitFor('the server to print its port', () =>
    /listening on http:\/\/[^\s]+:(\d+)/.exec(cli.output()),
  );
  return Number(m[1]);
}

describe('flotilla echo-server', () => {
  it('prints the port it picked for --port 0, serves the openai client (streaming too) and exits 0 on SIGTERM', async () => {
    const cli = runCli(['--port', '0', '--token-latency-ms', '2']);
    const port = await listeningPort(cli);
    const client = new OpenAI({
      baseURL: `http://127.0.0.1:${port}/v1`,
      apiKey: 'x',
      maxRetries: 0,
    });
    const stream = await client.chat.completions.create({
      model: 'echo',
      messages: [{ role: 'user', content: 'streams through a real process' }],
      stream: true,
    });
    let text = '';
    let chunks = 0;
    for await (const chunk of stream) {
      chunks++;
      text += chunk.choices[0]?.delta.content ?? '';
    }
    expect(text).toBe('streams through a real process');
    expect(chunks).toBe(6); // five tokens and the finishing chunk
    cli.child.kill('SIGTERM');
    expect(await cli.exited).toEqual({ code: 0, signal: null });
  });

  it('takes its knobs from the environment: PORT, startup delay, model and replica id', async () => {
    const { freePort } = await import('../../src/backends/free-port.ts');
    const port = await freePort('127.0.0.1');
    const cli = runCli([], {
      PORT: String(port),
      ECHO_STARTUP_DELAY_MS: '1500',
      ECHO_MODEL: 'env-model',
      FLOTILLA_REPLICA_ID: 'replica-from-env',
    });
    expect(await listeningPort(cli)).toBe(port);
    const base = `http://127.0.0.1:${port}`;
    const first = await httpStatus(`${base}/health`);
    console.log(`first /health during a 1500 ms startup delay: ${first}`);
    await waitFor(
      '/health to pass after the delay',
      async () => (await httpStatus(`${base}/health`)) === 200,
    );
    const models = await (await fetch(`${base}/v1/models`)).json();
    expect(models).toMatchObject({
      data: [{ id: 'env-model' }],
      pid: cli.child.pid,
      replica_id: 'replica-from-env',
    });
  });

  it('exits at once with status 1 on POST /admin/crash', async () => {
    const cli = runCli(['--port', '0']);
    const port = await listeningPort(cli);
    await fetch(`http://127.0.0.1:${port}/admin/crash`, { method: 'POST' }).catch(() => undefined);
    expect(await cli.exited).toEqual({ code: 1, signal: null });
  });

  it('rejects a bad flag with exit status 2 and the usage', async () => {
    const cli = runCli(['--port', 'eighty']);
    expect((await cli.exited).code).toBe(2);
    expect(cli.output()).toContain('--port: expected an integer');
  });

  it('runs as examples/echo: the service definition command from the model folder answers /health', async () => {
    const folder = path.join(REPO_ROOT, 'examples', 'echo');
    const def = TOML.parse(readFileSync(path.join(folder, 'service-definition.toml'), 'utf8')) as {
      command: string;
      environ: Record<string, string>;
      health_check: { path: string };
    };
    const backend = await createProcessBackend({ dataDir: tempDir() });
    try {
      const h = await backend.start(
        'example-echo',
        sessionSpec(splitCommand(def.command), { workdir: folder, environ: def.environ }),
      );
      await waitFor(
        'the example to answer its health path',
        async () => (await httpStatus(`${h.url}${def.health_check.path}`)) === 200,
      );
      const models = await (await fetch(`${h.url}/v1/models`)).json();
      expect(models).toMatchObject({ pid: h.pid, replica_id: 'example-echo' });
    } finally {
      await backend.close({ stopReplicas: true, graceMs: 5000 });
    }
  });
});
