/**
 * Leader election with contenders in their own processes (fixtures/contender.ts) on a real
 * etcd: one leader at a time, a standby taking over within the lease TTL when the leader is
 * killed with SIGKILL, and a leader that loses its lease noticing it and exiting; a leader
 * whose event loop stalls (a restore holding a starved CPU) for less than its lease keeps it,
 * one stalled past its lease steps down without writing again.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { realpathSync } from 'node:fs';
import { createConnection, createServer, type Server, type Socket } from 'node:net';
import { fileURLToPath } from 'node:url';
import { Etcd3 } from 'etcd3';
import { afterEach, beforeEach, describe, expect, it, type TestContext } from 'vitest';
import { isolatedPrefix, services } from '../../harness/isolation.ts';
import { waitFor } from '../../harness/wait.ts';

const REPO = realpathSync(fileURLToPath(new URL('../../../', import.meta.url)));
const FIXTURE = 'test/integration/etcd/fixtures/contender.ts';
const TTL_S = 5;

interface Contender {
  child: ChildProcess;
  lines: Array<{ at: number; text: string }>;
  exited: Promise<number | null>;
}

let client: Etcd3;
let electionName: string;
const children: ChildProcess[] = [];

beforeEach((ctx: TestContext) => {
  client = new Etcd3({ hosts: services().etcdEndpoints.split(',') });
  electionName = `${isolatedPrefix(ctx)}coordinator`;
});

afterEach(async () => {
  for (const c of children.splice(0)) {
    if (c.exitCode === null && c.signalCode === null) {
      const gone = new Promise((r) => c.once('exit', r));
      c.kill('SIGKILL');
      await gone;
    }
  }
  await client.delete().prefix(`election/${electionName}`);
  client.close();
});

function contender(
  id: string,
  endpoints = services().etcdEndpoints,
  env: Record<string, string> = {},
): Contender {
  const child = spawn(process.execPath, ['--import', 'tsx', FIXTURE], {
    cwd: REPO,
    env: {
      ...process.env,
      ETCD_ENDPOINTS: endpoints,
      ELECTION_NAME: electionName,
      CONTENDER_ID: id,
      LEASE_TTL_S: String(TTL_S),
      ...env,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  children.push(child);
  const c: Contender = {
    child,
    lines: [],
    exited: new Promise((r) => child.once('exit', (code) => r(code))),
  };
  let buf = '';
  child.stdout!.on('data', (d) => {
    buf += d;
    const parts = buf.split('\n');
    buf = parts.pop() ?? '';
    for (const text of parts) c.lines.push({ at: performance.now(), text });
  });
  let err = '';
  child.stderr!.on('data', (d) => {
    err += d;
  });
  child.once('exit', (code) => {
    if (code !== 0 && code !== 3 && code !== null)
      console.log(`[contender ${id}] exit ${code}: ${err}`);
  });
  return c;
}

function line(c: Contender, prefix: string): { at: number; text: string } | undefined {
  return c.lines.find((l) => l.text.startsWith(prefix));
}

async function waitLine(c: Contender, prefix: string, timeoutMs = 30_000) {
  return waitFor(() => line(c, prefix), {
    timeoutMs,
    message: () => `a "${prefix}" line; got ${JSON.stringify(c.lines.map((l) => l.text))}`,
  });
}

/** A TCP relay to etcd that the test can cut, as a network partition would. */
async function relayToEtcd(): Promise<{ url: string; cut: () => Promise<void> }> {
  const target = new URL(services().etcdEndpoints.split(',')[0]!);
  const sockets = new Set<Socket>();
  const server: Server = createServer((inbound) => {
    const outbound = createConnection(Number(target.port), target.hostname);
    for (const s of [inbound, outbound]) {
      sockets.add(s);
      s.on('error', () => {});
      s.on('close', () => sockets.delete(s));
    }
    inbound.pipe(outbound).pipe(inbound);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as { port: number }).port;
  return {
    url: `http://127.0.0.1:${port}`,
    cut: async () => {
      const closed = new Promise((r) => server.close(r));
      for (const s of sockets) s.destroy();
      await closed;
    },
  };
}

describe('leader election', () => {
  it('one leader at a time; after SIGKILL of the leader the standby leads within TTL + 2 s', async () => {
    const a = contender('a');
    await waitLine(a, 'leader ');
    const b = contender('b');
    const standby = await waitLine(b, 'standby ');
    expect(standby.text).toBe('standby a');
    expect(await client.election(electionName).leader()).toBe('a');
    expect(line(b, 'leader ')).toBeUndefined();

    const killedAt = performance.now();
    a.child.kill('SIGKILL');
    const took = await waitLine(b, 'leader ', (TTL_S + 10) * 1000);
    const ms = took.at - killedAt;
    console.log(
      `[leader-election] standby led ${ms.toFixed(0)} ms after SIGKILL of the leader (lease TTL ${TTL_S} s)`,
    );
    expect(ms).toBeLessThan((TTL_S + 2) * 1000);
    expect(await client.election(electionName).leader()).toBe('b');
    // Fencing tokens grow with each leader.
    const rev = (c: Contender) => BigInt(line(c, 'leader ')!.text.split(' ')[1]!);
    expect(rev(b) > rev(a)).toBe(true);
  });

  it('a resigning leader hands over at once', async () => {
    const a = contender('a');
    await waitLine(a, 'leader ');
    const b = contender('b');
    await waitLine(b, 'standby ');
    const t0 = performance.now();
    a.child.kill('SIGTERM');
    expect(await a.exited).toBe(0);
    const took = await waitLine(b, 'leader ');
    console.log(`[leader-election] handover after a clean resign: ${(took.at - t0).toFixed(0)} ms`);
  });

  it('a leader whose lease is gone notices and exits non-zero', async () => {
    const a = contender('a');
    const elected = await waitLine(a, 'leader ');
    const key = elected.text.split(' ')[2]!;
    const leaseId = key.slice(key.lastIndexOf('/') + 1);
    const t0 = performance.now();
    await client.leaseClient.leaseRevoke({ ID: leaseId });
    const lost = await waitLine(a, 'lost ', TTL_S * 1000 * 2);
    expect(await a.exited).toBe(3);
    console.log(
      `[leader-election] lease revoked -> leader noticed in ${(lost.at - t0).toFixed(0)} ms (${lost.text})`,
    );
  });

  it('a leader cut off from etcd gives up before a standby can take over', async () => {
    const relay = await relayToEtcd();
    const a = contender('a', relay.url);
    await waitLine(a, 'leader ');
    const b = contender('b');
    await waitLine(b, 'standby ');
    const t0 = performance.now();
    await relay.cut();
    const lost = await waitLine(a, 'lost ', (TTL_S + 5) * 1000);
    const took = await waitLine(b, 'leader ', (TTL_S + 10) * 1000);
    console.log(
      `[leader-election] partition: old leader gave up after ${(lost.at - t0).toFixed(0)} ms (${lost.text}), standby led after ${(took.at - t0).toFixed(0)} ms`,
    );
    expect(lost.at).toBeLessThan(took.at);
    expect(await a.exited).toBe(3);
  });

  it('a leader whose event loop is blocked longer than a renewal interval but shorter than the lease keeps leadership', async () => {
    // 3 s: longer than our renewal interval (TTL/5 = 1 s) and etcd3's (TTL/3), shorter than 5 s.
    const a = contender('a', undefined, { BLOCK_MS: '3000' });
    await waitLine(a, 'write elected ok');
    const b = contender('b');
    await waitLine(b, 'standby ');
    a.child.kill('SIGUSR2');
    await waitLine(a, 'unblocked', 20_000);
    const wrote = await waitLine(a, 'write after-stall ok', 10_000);
    // Kept for a whole lease after the stall: no loss, no takeover, etcd still names a.
    const until = wrote.at + TTL_S * 1000;
    while (performance.now() < until) {
      expect(line(a, 'lost ')).toBeUndefined();
      expect(line(b, 'leader ')).toBeUndefined();
      await new Promise((r) => setTimeout(r, 100));
    }
    expect(a.child.exitCode).toBeNull();
    expect(await client.election(electionName).leader()).toBe('a');
    expect(line(a, 'write after-stall skipped')).toBeUndefined();
  });

  it('a leader blocked past its lease steps down and never writes after the new election', async () => {
    // 8 s, as the fault suite's SIGSTOP: past the 5 s lease, the standby takes over meanwhile.
    const a = contender('a', undefined, { BLOCK_MS: '8000' });
    const aElected = await waitLine(a, 'leader ');
    await waitLine(a, 'write elected ok');
    const b = contender('b');
    await waitLine(b, 'standby ');
    a.child.kill('SIGUSR2');
    await waitLine(a, 'blocking ');
    const bElected = await waitLine(b, 'leader ', 30_000);
    expect(await a.exited).toBe(3);
    const lost = line(a, 'lost ');
    console.log(`[leader-election] stalled past the lease: ${lost?.text}`);
    expect(lost).toBeDefined();
    // Nothing written after the stall: the write was not even tried (lease unconfirmed).
    expect(a.lines.some((l) => /^write after-stall (ok|refused)/.test(l.text))).toBe(false);
    const rev = (l: { text: string }) => BigInt(l.text.split(' ')[1]!);
    expect(rev(bElected) > rev(aElected)).toBe(true);
    const kv = (await client.get(`election/${electionName}-writes/a`).exec()).kvs[0];
    expect(kv?.value.toString()).toBe('elected');
    expect(BigInt(kv!.mod_revision) < rev(bElected)).toBe(true);
  });
});
