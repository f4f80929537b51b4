/**
 * Secrets never reach the logs: `flotilla serve` runs as a process (embedded store, debug log
 * level, an API token) and is driven over HTTP with calls that carry secrets — a wrong token,
 * a deploy whose environ holds `HF_TOKEN`, a refused deploy and an update with other secret
 * values, status reads, a call through the proxy. Then every byte the process wrote on stdout
 * and stderr is searched for the token and the secret values: none may appear.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, realpathSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { freePort } from '../harness/services.ts';
import { waitFor } from '../harness/wait.ts';

const REPO = realpathSync(fileURLToPath(new URL('../../', import.meta.url)));
const dataDir = mkdtempSync(join(tmpdir(), 'flotilla-log-redaction-'));
const TOKEN = 'tok_e2e_Redact_9f3c1a7b5d';
const WRONG_TOKEN = 'tok_wrong_Guess_0a1b2c3d4e';
const SECRETS = {
  HF_TOKEN: 'hf_secretvalue123',
  OPENAI_API_KEY: 'sk-secretvalue456',
  DB_PASSWORD: 'pw_secretvalue789',
};
const UPDATED_SECRET = 'hf_rotatedsecret000';
const REFUSED_SECRET = 'hf_refusedsecret111';

let child: ChildProcess | null = null;
let output = '';

afterAll(async () => {
  if (child && child.exitCode === null) child.kill('SIGKILL');
  rmSync(dataDir, { recursive: true, force: true });
});

function startServe(apiPort: number, proxyPort: number): Promise<{ api: string; proxy: string }> {
  const env: NodeJS.ProcessEnv = { ...process.env };
  // The embedded store and in-process health: nothing from the harness's services.
  for (const k of Object.keys(env)) {
    if (/^(DATABASE_URL|REDIS_URL|ETCD_ENDPOINTS|FLOTILLA_)/.test(k)) delete env[k];
  }
  const proc = spawn(
    process.execPath,
    [
      'bin/flotilla.js',
      'serve',
      '--api-port',
      String(apiPort),
      '--proxy-port',
      String(proxyPort),
      '--data-dir',
      dataDir,
      '--model-root',
      REPO,
      '--api-token',
      TOKEN,
      '--log-level',
      'debug',
      '--health-interval',
      '1',
    ],
    { cwd: REPO, env, stdio: ['ignore', 'pipe', 'pipe'] },
  );
  child = proc;
  proc.stderr!.on('data', (d) => {
    output += d;
  });
  return new Promise((resolve, reject) => {
    const timer = setTimeout(
      () => reject(new Error(`serve did not print its listeners in 90 s:\n${output}`)),
      90_000,
    );
    proc.stdout!.on('data', (d) => {
      output += d;
      const api = /^api (\S+)$/m.exec(output);
      const proxy = /^proxy (\S+)$/m.exec(output);
      if (api && proxy) {
        clearTimeout(timer);
        resolve({ api: api[1]!, proxy: proxy[1]! });
      }
    });
    proc.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`serve exited with ${code} before listening:\n${output}`));
    });
  });
}

async function stopServe(): Promise<void> {
  const proc = child;
  if (!proc || proc.exitCode !== null) return;
  const exited = new Promise((r) => proc.once('exit', r));
  proc.kill('SIGTERM');
  await Promise.race([
    exited,
    new Promise((r) => setTimeout(r, 60_000)).then(() => proc.kill('SIGKILL')),
  ]);
}

describe('secrets in logs', () => {
  it('the token, a wrong token and secret-looking environ values never appear in serve’s stdout or stderr', async () => {
    const { api, proxy } = await startServe(await freePort(), await freePort());
    const call = (path: string, init: RequestInit = {}, token = TOKEN) =>
      fetch(`${api}${path}`, {
        ...init,
        headers: {
          authorization: `Bearer ${token}`,
          ...(init.body ? { 'content-type': 'application/json' } : {}),
        },
      });

    await waitFor(async () => (await fetch(`${api}/ready`)).status === 200, {
      timeoutMs: 60_000,
      message: 'serve never ready',
    });

    // A wrong token, on a read and on a write carrying a secret.
    expect((await call('/v1/deployments', {}, WRONG_TOKEN)).status).toBe(403);
    const sneaky = await call(
      '/v1/deployments',
      {
        method: 'POST',
        body: JSON.stringify({ name: 'sneaky', model_path: 'examples/echo', environ: SECRETS }),
      },
      WRONG_TOKEN,
    );
    expect(sneaky.status).toBe(403);

    // A refused deploy whose body holds a secret (replicas out of range).
    const refused = await call('/v1/deployments', {
      method: 'POST',
      body: JSON.stringify({
        name: 'bad',
        model_path: 'examples/echo',
        replicas: 100_000,
        environ: { HF_TOKEN: REFUSED_SECRET },
      }),
    });
    expect(refused.status).toBe(400);
    expect(await refused.text()).not.toContain(REFUSED_SECRET);

    // The deploy, with secrets in its environ, up to RUNNING.
    const deployed = await call('/v1/deployments', {
      method: 'POST',
      body: JSON.stringify({
        name: 'echo',
        model_path: 'examples/echo',
        replicas: 1,
        environ: { ECHO_MODEL: 'echo', ...SECRETS },
      }),
    });
    expect(deployed.status, await deployed.clone().text()).toBe(201);
    await waitFor(
      async () =>
        ((await (await call('/v1/deployments/echo')).json()) as { state: string }).state ===
        'RUNNING',
      { timeoutMs: 120_000, message: 'echo never RUNNING' },
    );
    const view = await (await call('/v1/deployments/echo')).text();
    for (const v of Object.values(SECRETS)) expect(view).not.toContain(v);

    // Traffic through the proxy, with the token as a header the replica might echo.
    const through = await fetch(`${proxy}/echo/v1/models`);
    expect(through.status).toBe(200);

    // An update that rotates a secret, then events, logs and the list.
    const updated = await call('/v1/deployments/echo', {
      method: 'PATCH',
      body: JSON.stringify({
        environ: { ECHO_MODEL: 'echo', ...SECRETS, HF_TOKEN: UPDATED_SECRET },
      }),
    });
    expect(updated.status, await updated.clone().text()).toBeLessThan(300);
    expect((await call('/v1/deployments/echo/events')).status).toBe(200);
    expect((await call('/v1/deployments')).status).toBe(200);
    expect((await call('/v1/deployments/echo', { method: 'DELETE' })).status).toBeLessThan(300);
    await waitFor(
      async () =>
        (await call('/v1/deployments/echo')).status === 404 ||
        ((await (await call('/v1/deployments/echo')).json()) as { state: string }).state ===
          'TERMINATED',
      { timeoutMs: 60_000, message: 'echo never TERMINATED' },
    );
    await stopServe();

    // The run did log (so an empty log cannot pass), and none of it holds a secret.
    expect(output).toMatch(/"msg":"request"/);
    const hits = [
      TOKEN,
      WRONG_TOKEN,
      ...Object.values(SECRETS),
      UPDATED_SECRET,
      REFUSED_SECRET,
    ].filter((s) => output.includes(s));
    expect(hits, hits.map((s) => output.split('\n').find((l) => l.includes(s))).join('\n')).toEqual(
      [],
    );
  }, 400_000);
});
