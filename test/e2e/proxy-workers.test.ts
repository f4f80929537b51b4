/**
 * `flotilla serve --proxy-workers 2` as a process (embedded database): the proxy port is
 * served by two worker processes, both answer proxied traffic (x-flotilla-worker), each
 * follows the routing table, and a deployment's admission limit holds across them (each
 * worker takes its part: 4 per replica split 2 + 2).
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, realpathSync } from 'node:fs';
import http from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { freePort } from '../harness/services.ts';
import { waitFor } from '../harness/wait.ts';

const REPO = realpathSync(fileURLToPath(new URL('../../', import.meta.url)));
const dataDir = mkdtempSync(join(tmpdir(), 'flotilla-workers-e2e-'));
let server: ChildProcess | null = null;
let stdout = '';
let stderr = '';

afterAll(async () => {
  const child = server;
  if (!child || child.exitCode !== null) return;
  const exited = new Promise((r) => child.once('exit', r));
  child.kill('SIGTERM');
  const t = setTimeout(() => child.kill('SIGKILL'), 30_000);
  await exited;
  clearTimeout(t);
}, 60_000);

/** One request on a connection of its own (so the cluster's round robin sees each). */
function get(
  url: string,
  method = 'GET',
  body?: string,
): Promise<{ status: number; headers: http.IncomingHttpHeaders; text: string }> {
  return new Promise((resolve, reject) => {
    const req = http.request(
      url,
      {
        method,
        agent: false,
        headers: body ? { 'content-type': 'application/json' } : {},
      },
      (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (d) => {
          text += d;
        });
        res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, text }));
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

describe('serve --proxy-workers 2', () => {
  let api = '';
  let proxy = '';

  it('starts two proxy workers on one port, both answering, the limit holding across them', async () => {
    const [apiPort, proxyPort] = [await freePort(), await freePort()];
    server = spawn(
      process.execPath,
      [
        'bin/flotilla.js',
        'serve',
        '--api-port',
        String(apiPort),
        '--proxy-port',
        String(proxyPort),
        '--proxy-workers',
        '2',
        '--data-dir',
        dataDir,
        '--model-root',
        REPO,
        '--health-interval',
        '1',
      ],
      {
        cwd: REPO,
        env: {
          ...process.env,
          DATABASE_URL: '',
          REDIS_URL: '',
          ETCD_ENDPOINTS: '',
          FLOTILLA_API_TOKEN: '',
        },
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    );
    server.stdout!.on('data', (d) => {
      stdout += d;
    });
    server.stderr!.on('data', (d) => {
      stderr += d;
    });
    await waitFor(() => /^api (\S+)$/m.test(stdout) && /^proxy (\S+)$/m.test(stdout), {
      // A fresh embedded database plus two workers: 50 s here on a loaded 2-core machine.
      timeoutMs: 240_000,
      message: 'serve did not print its api and proxy listeners',
    });
    api = /^api (\S+)$/m.exec(stdout)![1]!;
    proxy = /^proxy (\S+)$/m.exec(stdout)![1]!;
    expect(proxy).toBe(`http://127.0.0.1:${proxyPort}`);
    // Both workers logged that they listen (JSON lines with their worker index).
    const workerLines = stdout
      .split('\n')
      .filter((l) => l.startsWith('{'))
      .map((l) => JSON.parse(l) as { worker?: number; msg?: string; pid?: number })
      .filter((l) => l.msg === 'proxy listening');
    expect(new Set(workerLines.map((l) => l.worker))).toEqual(new Set([0, 1]));
    expect(new Set(workerLines.map((l) => l.pid)).size).toBe(2);

    const created = await fetch(`${api}/v1/deployments`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({
        name: 'echo',
        command: [
          process.execPath,
          join(REPO, 'bin/flotilla.js'),
          'echo-server',
          '--port',
          '{port}',
          '--token-latency-ms',
          '100',
        ],
        replicas: 1,
        admission: { max_concurrent_requests: 4, max_queue_size: 0 },
      }),
    });
    expect(created.status, `${await created.text()}\n${stderr.slice(-2000)}`).toBe(201);

    // Both workers follow the table: each answers through the new deployment.
    const workers = new Set<string>();
    await waitFor(
      async () => {
        const r = await get(`${proxy}/echo/v1/models`);
        if (r.status === 200) workers.add(String(r.headers['x-flotilla-worker']));
        return workers.size === 2;
      },
      { timeoutMs: 120_000, intervalMs: 50, message: `both workers serving: ${[...workers]}` },
    );
    expect(workers).toEqual(new Set(['0', '1']));

    // 24 streams at once, each 4 s long: 4 slots over the two workers (2 + 2), no queue.
    const content = Array.from({ length: 40 }, (_, i) => `w${i}`).join(' ');
    const body = JSON.stringify({
      model: 'echo',
      stream: true,
      messages: [{ role: 'user', content }],
    });
    const results = await Promise.all(
      Array.from({ length: 24 }, () => get(`${proxy}/echo/v1/chat/completions`, 'POST', body)),
    );
    const ok = results.filter((r) => r.status === 200);
    const refused = results.filter((r) => r.status === 503);
    console.log(
      `[workers] ${ok.length} streamed (workers ${ok.map((r) => r.headers['x-flotilla-worker']).join(',')}), ${refused.length} refused`,
    );
    expect(ok.length + refused.length).toBe(24);
    expect(ok.length).toBeGreaterThanOrEqual(1);
    expect(ok.length).toBeLessThanOrEqual(4);
    for (const r of refused) expect(JSON.parse(r.text).error.code).toBe('overloaded');
    // Per worker, never more than its part (2).
    const perWorker = new Map<string, number>();
    for (const r of ok) {
      const w = String(r.headers['x-flotilla-worker']);
      perWorker.set(w, (perWorker.get(w) ?? 0) + 1);
    }
    for (const n of perWorker.values()) expect(n).toBeLessThanOrEqual(2);
  }, 480_000);
});
