/// <reference lib="dom" />
/**
 * The inspector in a real browser: Debian's chromium (/usr/bin/chromium), headless, driven by
 * puppeteer-core (which downloads nothing). `flotilla serve` runs as a process with a token;
 * the echo server is deployed with 2 replicas; one replica's process is killed with SIGKILL
 * while the page is open. Screenshots go to docs/.
 */
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, realpathSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import puppeteer, { type Browser, type Page } from 'puppeteer-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { FleetEntry } from '../../src/api/inspector-routes.ts';
import { flatStates, MACHINE_NAMES, statechart } from '../../src/inspector/statechart.ts';
import { stopChildren } from '../harness/child-processes.ts';
import { replicaPids } from '../harness/replica-processes.ts';
import { freePort } from '../harness/services.ts';
import { waitFor } from '../harness/wait.ts';

const REPO = realpathSync(fileURLToPath(new URL('../../', import.meta.url)));
const DOCS = join(REPO, 'docs');
const CHROMIUM = '/usr/bin/chromium';
const TOKEN = 'e2e-inspector-token';
let server: ChildProcess | null = null;
let serverLog = '';
let api = '';
let browser: Browser | null = null;

async function call<T>(method: string, path: string, body?: unknown): Promise<T> {
  const res = await fetch(`${api}${path}`, {
    method,
    headers: {
      authorization: `Bearer ${TOKEN}`,
      ...(body ? { 'content-type': 'application/json' } : {}),
    },
    ...(body ? { body: JSON.stringify(body) } : {}),
  });
  const json = (await res.json()) as T;
  if (!res.ok) throw new Error(`${method} ${path}: ${res.status} ${JSON.stringify(json)}`);
  return json;
}

interface View {
  id: string;
  state: string;
  replicas: Array<{ id: string; state: string; restarts: number }>;
}

beforeAll(async () => {
  const dataDir = mkdtempSync(join(tmpdir(), 'flotilla-inspector-e2e-'));
  const child = spawn(
    process.execPath,
    [
      'bin/flotilla.js',
      'serve',
      '--api-port',
      String(await freePort()),
      '--proxy-port',
      String(await freePort()),
      '--data-dir',
      dataDir,
      '--model-root',
      REPO,
      '--health-interval',
      '1',
    ],
    {
      cwd: REPO,
      env: { ...process.env, FLOTILLA_API_TOKEN: TOKEN, DATABASE_URL: '', REDIS_URL: '' },
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  server = child;
  child.stderr!.on('data', (d) => {
    serverLog += d;
  });
  let out = '';
  child.stdout!.on('data', (d) => {
    out += d;
  });
  api = await waitFor(() => /^api (\S+)$/m.exec(out)?.[1], {
    timeoutMs: 90_000,
    message: () => `serve did not print its API URL:\n${serverLog.slice(-2000)}`,
  });
  browser = await puppeteer.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage'],
  });
}, 120_000);

afterAll(async () => {
  await browser?.close();
  if (server) await stopChildren([server]);
});

async function shot(page: Page, name: string) {
  if (!existsSync(DOCS)) mkdirSync(DOCS);
  await page.screenshot({ path: join(DOCS, name), fullPage: false });
}

describe('inspector in chromium', () => {
  it('asks for the token, shows echo RUNNING with 2 HEALTHY replicas in their statecharts, follows a kill -9 live within 2 s, and scrubs back to before it', async () => {
    expect(existsSync(CHROMIUM)).toBe(true);
    const page = await browser!.newPage();
    await page.setViewport({ width: 1500, height: 1000 });
    const errors: string[] = [];
    page.on('pageerror', (e) => errors.push(String(e)));

    const d = await call<View>('POST', '/v1/deployments', {
      name: 'echo',
      model_path: 'examples/echo',
      replicas: 2,
    });

    // `flotilla inspect NAME` prints the page's URL (no token in it).
    const inspect = spawnSync(
      process.execPath,
      ['bin/flotilla.js', 'inspect', 'echo', '--api', api, '--token', TOKEN],
      { cwd: REPO, encoding: 'utf8' },
    );
    expect(inspect.status).toBe(0);
    expect(inspect.stdout.trim()).toBe(`${api}/inspector/deployments/echo`);

    // Without the token: the login form and no data.
    await page.goto(`${api}/inspector`);
    await page.waitForSelector('#login:not([hidden])');
    expect(await page.$$eval('#app *', (n) => n.length)).toBe(0);
    expect(await page.content()).not.toContain('echo');
    await page.type('#token', TOKEN);
    await page.click('#login button[type=submit]');

    // Fleet view: echo reaches RUNNING 2/2 without a reload.
    await page.waitForFunction(
      () => {
        const tr = document.querySelector('tr[data-name="echo"]') as HTMLElement | null;
        return tr?.dataset.state === 'RUNNING' && tr.querySelector('.ready')?.textContent === '2/2';
      },
      { timeout: 60_000 },
    );

    // Deployment view.
    await page.goto(`${api}/inspector/deployments/echo`);
    await page.waitForFunction(
      () =>
        document.querySelector('.chart[data-kind=deployment]')?.getAttribute('data-state') ===
          'RUNNING' &&
        [...document.querySelectorAll('.chart[data-kind=replica]')].filter(
          (c) => c.querySelector('.state.current[data-state="HEALTHY"]') !== null,
        ).length === 2,
      { timeout: 30_000 },
    );
    // Each drawn statechart is exactly the machine definition's states and edges.
    for (const name of MACHINE_NAMES) {
      const chart = statechart(name);
      const drawn = await page.$eval(`.chart[data-kind=${name}] svg`, (svg) => ({
        states: [...svg.querySelectorAll('.state')].map((g) => (g as HTMLElement).dataset.state!),
        edges: [...svg.querySelectorAll('.edge')].map((g) => {
          const e = (g as HTMLElement).dataset;
          return `${e.from} -> ${e.to} : ${e.event} [${e.guard}]`;
        }),
      }));
      expect(drawn.states.sort()).toEqual(
        flatStates(chart.states)
          .map((s) => s.id)
          .sort(),
      );
      expect(drawn.edges.sort()).toEqual(
        chart.edges.map((e) => `${e.from} -> ${e.to} : ${e.event} [${e.guard ?? ''}]`).sort(),
      );
    }
    const before = await call<View>('GET', `/v1/deployments/${d.id}`);
    const victim = before.replicas[0]!;
    const pids = replicaPids([victim.id]).get(victim.id) ?? [];
    expect(pids.length).toBeGreaterThan(0);
    // A moment that is surely after the last transition and before the kill.
    await new Promise((r) => setTimeout(r, 1500));
    const beforeKill = Date.now() - 700;
    await page.evaluate(() => {
      (window as unknown as { __noReload: boolean }).__noReload = true;
    });

    const killedAt = Date.now();
    for (const pid of pids) process.kill(pid, 'SIGKILL');
    await page.waitForFunction(
      (id) => {
        const card = document.querySelector(`.chart[data-actor="replica:${id}"]`);
        return card !== null && card.getAttribute('data-state') !== 'HEALTHY';
      },
      { timeout: 2_000, polling: 'raf' },
      victim.id,
    );
    const leftHealthyMs = Date.now() - killedAt;
    // Its replacement session (the replica restarts in place, max_restarts = 1) is HEALTHY again.
    await page.waitForFunction(
      (id) =>
        document.querySelector(`.chart[data-actor="replica:${id}"]`)?.getAttribute('data-state') ===
          'HEALTHY' &&
        [...document.querySelectorAll('.chart[data-kind=replica]')].filter(
          (c) => c.getAttribute('data-state') === 'HEALTHY',
        ).length === 2,
      { timeout: 30_000 },
      victim.id,
    );
    const after = await call<View>('GET', `/v1/deployments/${d.id}`);
    expect(after.replicas.find((r) => r.id === victim.id)?.restarts).toBe(1);
    const newPids = replicaPids([victim.id]).get(victim.id) ?? [];
    expect(newPids.length).toBeGreaterThan(0);
    expect(newPids.some((p) => pids.includes(p))).toBe(false);
    expect(
      await page.evaluate(() => (window as unknown as { __noReload?: boolean }).__noReload),
    ).toBe(true);
    const timeline = await page.$$eval('#timeline li', (li) => li.map((l) => l.textContent ?? ''));
    expect(timeline.some((t) => /HEALTHY → UNHEALTHY/.test(t))).toBe(true);
    // The recovered replica selected: its statechart marks UNHEALTHY -> HEALTHY, its events listed.
    await page.click(`.tree [data-actor="replica:${victim.id}"]`);
    await page.waitForSelector(`.chart[data-actor="replica:${victim.id}"] .edge.last`);
    await shot(page, 'inspector-deployment.png');

    // Time travel: the scrubber set to before the kill shows both original replicas HEALTHY.
    await page.evaluate((t) => {
      const range = document.getElementById('scrubber') as HTMLInputElement;
      const first = Date.parse(
        document.querySelector('#timeline li:last-child time')!.textContent!.replace(' ', 'T') +
          'Z',
      );
      range.value = String(Math.floor(((t - first) / (Date.now() - first)) * 1000));
      range.dispatchEvent(new Event('input'));
    }, beforeKill);
    await page.waitForSelector('#past-banner:not([hidden])', { timeout: 5_000 });
    await page.waitForFunction(
      (ids) =>
        ids.every(
          (id) =>
            document
              .querySelector(`.chart[data-actor="replica:${id}"]`)
              ?.getAttribute('data-state') === 'HEALTHY',
        ) && document.querySelectorAll('.chart[data-kind=replica]').length === ids.length,
      { timeout: 5_000 },
      before.replicas.map((r) => r.id),
    );
    await shot(page, 'inspector-time-travel.png');

    const latencies = await page.evaluate(
      () => (window as unknown as { __inspector: { latencies: number[] } }).__inspector.latencies,
    );
    const sorted = [...latencies].sort((a, b) => a - b);
    console.log(
      `[inspector] replica left HEALTHY on the page ${leftHealthyMs} ms after kill -9; transition-to-DOM latency over ${sorted.length} live updates: median ${sorted[Math.floor(sorted.length / 2)]} ms, max ${sorted[sorted.length - 1]} ms`,
    );
    expect(leftHealthyMs).toBeLessThan(2_000);
    expect(errors).toEqual([]);
    await page.close();
  });

  it('renders a fleet of 1,000 deployments and reports its first-render time', async () => {
    const page = await browser!.newPage();
    await page.setViewport({ width: 1500, height: 1000 });
    const template: FleetEntry = {
      id: '',
      name: '',
      state: 'RUNNING',
      reason: null,
      healthy_replicas: 2,
      target_replicas: 2,
      created_at: new Date().toISOString(),
      route_states: ['HEALTHY', 'HEALTHY'],
      replica_reasons: [],
    };
    const errors: string[] = [];
    page.on('pageerror', (e) => errors.push(String(e)));
    page.on('console', (m) => {
      if (m.type() === 'error') errors.push(m.text());
    });
    const states = ['RUNNING', 'RUNNING', 'RUNNING', 'PROVISIONING', 'ERROR', 'PENDING'];
    const items = Array.from({ length: 1000 }, (_, i) => ({
      ...template,
      id: `synthetic-${i}`,
      name: `model-${String(i).padStart(4, '0')}`,
      state: states[i % states.length],
      reason: i % 6 === 4 ? 'definition generator failed: no such model' : null,
      route_states: i % 10 === 7 ? ['HEALTHY', 'DEGRADED'] : template.route_states,
    }));
    // A front server answers GET /v1/inspector/fleet with 1,000 entries of the real shape
    // (copies of echo's) and passes everything else to `serve`: the page, its assets, the
    // feed and the token check are the real ones.
    let body = JSON.stringify({ items });
    const front = createServer(async (req, res) => {
      if (req.url === '/v1/inspector/fleet') {
        if (req.headers.authorization !== `Bearer ${TOKEN}`) {
          res.writeHead(401).end();
          return;
        }
        res.writeHead(200, { 'content-type': 'application/json' }).end(body);
        return;
      }
      const upstream = await fetch(`${api}${req.url}`, {
        headers: {
          ...(req.headers.authorization ? { authorization: req.headers.authorization } : {}),
        },
      });
      res.writeHead(upstream.status, {
        'content-type': upstream.headers.get('content-type') ?? 'application/octet-stream',
      });
      if (!upstream.body) return res.end();
      for await (const chunk of upstream.body) res.write(chunk);
      res.end();
    });
    await new Promise<void>((r) => front.listen(0, '127.0.0.1', r));
    const frontUrl = `http://127.0.0.1:${(front.address() as AddressInfo).port}`;
    const measure = async (n: number) => {
      body = JSON.stringify({ items: items.slice(0, n) });
      await page.reload();
      const h = await page
        .waitForFunction(
          () => {
            const p = (
              window as unknown as {
                __inspector: { fleetRenderMs: number | null; fetchedMs: number };
              }
            ).__inspector;
            return p.fleetRenderMs ? { render: p.fleetRenderMs, fetched: p.fetchedMs } : null;
          },
          { timeout: 20_000 },
        )
        .catch((err) => {
          throw new Error(`${String(err)}; page errors: ${errors.join(' | ')}`);
        });
      return (await h.jsonValue()) as { render: number; fetched: number };
    };
    await page.goto(`${frontUrl}/inspector`);
    await page.waitForSelector('#login:not([hidden])');
    await page.evaluate((t) => sessionStorage.setItem('flotilla.inspector.token', t), TOKEN);
    // Same run, same page: 1 deployment (baseline) and 1,000, alternately, three times each.
    const one: number[] = [];
    const thousand: Array<{ render: number; fetched: number }> = [];
    for (let i = 0; i < 3; i++) {
      one.push((await measure(1)).render);
      thousand.push(await measure(1000));
    }
    const med = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
    const m1000 = med(thousand.map((t) => t.render));
    const m1 = med(one);
    expect(await page.$$eval('table.fleet tbody tr', (r) => r.length)).toBe(1000);
    expect(await page.$$eval('table.fleet tbody tr.trouble', (r) => r.length)).toBeGreaterThan(100);
    await shot(page, 'inspector-fleet.png');
    console.log(
      `[inspector] first render from navigation start: 1,000 deployments (${(body.length / 1e3).toFixed(0)} kB of JSON) median ${m1000} ms [${thousand.map((t) => `${t.render} (data in at ${t.fetched})`).join(', ')}]; 1 deployment (baseline, same run) median ${m1} ms [${one.join(', ')}]; ratio ${(m1000 / m1).toFixed(2)}`,
    );
    front.close();
    await page.close();
  });
});
