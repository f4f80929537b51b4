/**
 * Load-independent cost per request of the own proxy against the bare node:http+undici
 * reference (not a test): `npx tsx bench/proxy/instructions.ts`. Starts two fixed-response
 * backends, the bare proxy and the own proxy from compiled dist/ (one process each), then per
 * connection count and target, one at a time: `perf stat -e instructions,task-clock -p <pid>`
 * attached for one `wrk -t1` run, divided by the requests wrk counted; then the bytes a client
 * and a replica see per request (one `curl`-like request each way). Instructions retired do
 * not depend on how busy the shared machine is (unlike throughput), so own/bare is comparable
 * across sessions. Needs perf with rights to count (root, or perf_event_paranoid <= 1) and a
 * CPU that exposes the counter; a VM often does not (then only task-clock is printed, and
 * bench/proxy/callgrind.sh gives instructions).
 * Env: INSN_SECONDS (default 5), INSN_CONNECTIONS ("16,64"), INSN_ROUNDS (3, medians),
 * INSN_TARGETS ("bare,js"; `js:<checkout>` runs another checkout's dist/, e.g. a build of main).
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { createServer, request } from 'node:http';
import type { AddressInfo } from 'node:net';
import { fileURLToPath } from 'node:url';

const SECONDS = Number(process.env.INSN_SECONDS ?? 5);
const CONNECTIONS = (process.env.INSN_CONNECTIONS ?? '16,64').split(',').map(Number);
const ROUNDS = Math.max(1, Number(process.env.INSN_ROUNDS ?? 3));
const TARGETS = (process.env.INSN_TARGETS ?? 'bare,js').split(',');
const here = (f: string) => fileURLToPath(new URL(f, import.meta.url));
const children: ChildProcess[] = [];
process.on('exit', () => {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
});

function start(
  args: string[],
  env: Record<string, string>,
): Promise<{ port: number; pid: number }> {
  const proc = spawn(process.execPath, args, {
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  children.push(proc);
  return new Promise((resolve, reject) => {
    let buf = '';
    proc.stdout!.on('data', (d: Buffer) => {
      buf += d.toString();
      const m = /LISTENING (\d+)/.exec(buf);
      if (m) resolve({ port: Number(m[1]), pid: proc.pid ?? 0 });
    });
    proc.once('exit', (code) => reject(new Error(`${args.join(' ')} exited ${code}`)));
  });
}

function run(cmd: string, args: string[]): Promise<{ out: string; err: string }> {
  return new Promise((resolve, reject) => {
    const p = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    children.push(p);
    let out = '';
    let err = '';
    p.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
    });
    p.stderr!.on('data', (d: Buffer) => {
      err += d.toString();
    });
    p.once('error', reject);
    p.once('exit', () => resolve({ out, err }));
  });
}

async function wrk(url: string, connections: number, seconds: number): Promise<number> {
  const { out } = await run('wrk', ['-t1', `-c${connections}`, `-d${seconds}s`, url]);
  if (/Non-2xx/.test(out)) throw new Error(`errors from ${url}: ${out}`);
  return Number(/(\d+) requests in/.exec(out)?.[1]);
}

/** perf stat attached to `pid` for one wrk run: instructions and task-clock ms per request. */
async function measure(pid: number, url: string, connections: number) {
  const perf = spawn(
    'perf',
    ['stat', '-x', ',', '-e', 'instructions,task-clock', '-p', String(pid)],
    { stdio: ['ignore', 'ignore', 'pipe'] },
  );
  children.push(perf);
  let report = '';
  perf.stderr!.on('data', (d: Buffer) => {
    report += d.toString();
  });
  await new Promise((r) => setTimeout(r, 300));
  const requests = await wrk(url, connections, SECONDS);
  const exited = new Promise((r) => perf.once('exit', r));
  perf.kill('SIGINT');
  await exited;
  const value = (event: string) =>
    Number(
      report
        .split('\n')
        .find((l) => l.includes(`,${event}`))
        ?.split(',')[0],
    );
  return {
    requests,
    insn: value('instructions') / requests,
    cpuUs: (value('task-clock') * 1000) / requests,
  };
}

/** One request through `port`: bytes of the response the client gets, and of the request the replica gets. */
async function wireBytes(port: number, seen: { request: number }) {
  return new Promise<{ response: number; request: number }>((resolve, reject) => {
    let response = 0;
    const req = request({ port, host: '127.0.0.1', path: '/m/x', agent: false }, (res) => {
      // Status line and headers as sent (rawHeaders keeps the case and order).
      response += `HTTP/1.1 ${res.statusCode} ${res.statusMessage}\r\n`.length + 2;
      for (let i = 0; i < res.rawHeaders.length; i += 2)
        response += `${res.rawHeaders[i]}: ${res.rawHeaders[i + 1]}\r\n`.length;
      res.on('data', (c: Buffer) => {
        response += c.length;
      });
      res.on('end', () => resolve({ response, request: seen.request }));
    });
    req.on('error', reject);
    req.end();
  });
}

async function main(): Promise<void> {
  const backends = await Promise.all(
    ['r1', 'r2'].map((id) => start([here('./backend.mjs')], { REPLICA_ID: id, PORT: '0' })),
  );
  // A third replica that records the request bytes it receives, for the wire comparison.
  const seen = { request: 0 };
  const recorder = createServer((req, res) => {
    seen.request =
      `${req.method} ${req.url} HTTP/1.1\r\n`.length +
      req.rawHeaders.reduce((n, v) => n + v.length + 2, 0) +
      2;
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': '2' });
    res.end('{}');
  });
  await new Promise<void>((r) => recorder.listen(0, '127.0.0.1', r));
  const recorderUrl = `http://127.0.0.1:${(recorder.address() as AddressInfo).port}`;
  const table = (urls: string[]) => ({
    version: 1,
    endpoints: [],
    deployments: [
      {
        deploymentId: 'bench',
        name: 'm',
        routing: { strategy: 'round_robin', request_timeout_s: 60, retries: 2 },
        routes: urls.map((url, i) => ({
          routeId: `route-r${i + 1}`,
          replicaId: `r${i + 1}`,
          url,
          state: 'HEALTHY',
          weight: 1,
        })),
        admission: { max_concurrent_requests: 256, max_queue_size: 1024 },
      },
    ],
  });
  const upstreams = backends.map((b) => `http://127.0.0.1:${b.port}`);
  const launch = (name: string, urls: string[]) => {
    const dir = name.includes(':') ? name.slice(name.indexOf(':') + 1) : null;
    return name === 'bare'
      ? start([here('./bare-proxy.mjs')], { UPSTREAMS: urls.join(',') })
      : start([here('./proxy-process.mjs')], {
          BENCH_TABLE: JSON.stringify(table(urls)),
          PROXY_SOURCE: `${dir ?? here('../..')}/dist/src`,
        });
  };
  const targets: Record<string, { port: number; pid: number }> = {};
  for (const name of TARGETS) targets[name] = await launch(name, upstreams);

  console.log('bytes per request (one GET /m/x, no client headers beyond Host):');
  for (const name of TARGETS) {
    const t = await launch(name, [recorderUrl]);
    const b = await wireBytes(t.port, seen);
    console.log(
      `  ${name.padEnd(8)} response to client ${b.response} B, request to replica ${b.request} B`,
    );
    process.kill(t.pid, 'SIGTERM');
  }

  const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
  for (const c of CONNECTIONS) {
    console.log(`\nc=${c} (${SECONDS} s per run, ${ROUNDS} rounds, medians)`);
    for (const t of Object.values(targets)) await wrk(`http://127.0.0.1:${t.port}/m/x`, c, 3);
    const insn: Record<string, number[]> = {};
    const cpu: Record<string, number[]> = {};
    for (let round = 0; round < ROUNDS; round++) {
      for (const [name, t] of Object.entries(targets)) {
        const m = await measure(t.pid, `http://127.0.0.1:${t.port}/m/x`, c);
        insn[name] = [...(insn[name] ?? []), m.insn];
        cpu[name] = [...(cpu[name] ?? []), m.cpuUs];
      }
    }
    const base = TARGETS[0]!;
    for (const name of TARGETS) {
      const i = median(insn[name]!);
      // perf reports <not supported> without hardware counters (VMs): bench/proxy/callgrind.sh counts instead.
      const instructions = Number.isFinite(i)
        ? `${(i / 1000).toFixed(1)} k instructions/req [${insn[name]!.map((x) => (x / 1000).toFixed(1)).join(', ')}] (${(i / median(insn[base]!)).toFixed(3)}x ${base})`
        : 'instructions n/a (no hardware counter; see callgrind.sh)';
      console.log(
        `  ${name.padEnd(8)} ${instructions}, task-clock ${median(cpu[name]!).toFixed(1)} µs/req [${cpu[name]!.map((x) => x.toFixed(1)).join(', ')}] (${(median(cpu[name]!) / median(cpu[base]!)).toFixed(3)}x)`,
      );
    }
  }
  recorder.close();
}

main()
  .catch((err) => {
    console.error(err);
    process.exitCode = 1;
  })
  .finally(() => {
    for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGTERM');
  });
