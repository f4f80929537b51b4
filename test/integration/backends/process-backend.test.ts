import { type ChildProcess, spawn } from 'node:child_process';
import { mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import type { ReplicaBackend, ReplicaExit, ReplicaHandle } from '../../../src/backends/backend.ts';
import {
  createProcessBackend,
  type ProcessBackendOptions,
} from '../../../src/backends/process-backend.ts';
import { FlotillaError } from '../../../src/domain/errors.ts';
import {
  echoSpec,
  httpStatus,
  isAlive,
  killAllWith,
  newMarker,
  processesWith,
  pythonSpec,
  REPO_ROOT,
  sessionSpec,
  shellSpec,
  tempDir,
  waitFor,
} from './helpers.ts';

// One marker per file: every process these tests start carries it in its argv.
const MARKER = newMarker();
const backends: ReplicaBackend[] = [];
const children: ChildProcess[] = [];

async function backend(opts: Partial<ProcessBackendOptions> & { dataDir?: string } = {}) {
  const b = await createProcessBackend({ dataDir: opts.dataDir ?? tempDir(), ...opts });
  backends.push(b);
  return b;
}

function markerDir(): string {
  const dir = path.join(tempDir(), MARKER);
  mkdirSync(dir);
  return dir;
}

afterEach(async () => {
  for (const c of children.splice(0)) c.kill('SIGKILL');
  await Promise.all(backends.splice(0).map((b) => b.close({ stopReplicas: true, graceMs: 2000 })));
  const leftovers = killAllWith(MARKER);
  expect(leftovers, 'processes left behind after stopping every replica').toBe(0);
});

afterAll(() => {
  expect(processesWith(MARKER)).toEqual([]);
});

describe('process backend: starting replicas', () => {
  it('starts three echo servers and three python http.servers that answer on their endpoints', async () => {
    const b = await backend();
    const dir = markerDir();
    const started = Date.now();
    const handles = await Promise.all([
      ...[0, 1, 2].map((i) => b.start(`echo-${i}`, echoSpec(MARKER))),
      // `python3` as a user would write it, found on PATH (through a shim, if there is one).
      ...[0, 1, 2].map((i) => b.start(`py-${i}`, pythonSpec(dir, {}, 'python3'))),
    ]);
    for (const h of handles) {
      expect(h.url).toBe(`http://127.0.0.1:${h.port}`);
      expect(h.pid).toBeGreaterThan(0);
    }
    expect(new Set(handles.map((h) => h.port)).size).toBe(6);
    await Promise.all(
      handles.map((h) =>
        waitFor(`${h.replicaId} answering`, async () => {
          const p = h.replicaId.startsWith('echo') ? '/health' : '/';
          return (await httpStatus(`${h.url}${p}`)) === 200;
        }),
      ),
    );
    console.log(`six replicas answering ${Date.now() - started} ms after start`);
    for (const h of handles.filter((x) => x.replicaId.startsWith('echo'))) {
      const res = await fetch(`${h.url}/v1/models`);
      expect(res.headers.get('x-echo-pid')).toBe(String(h.pid));
      expect(await res.json()).toMatchObject({ pid: h.pid, replica_id: h.replicaId });
    }
    // A shim's helper processes come and go while python starts; the count settles at six.
    await waitFor('exactly six replica processes', () => processesWith(MARKER).length === 6);
    expect((await b.list()).map((h) => h.replicaId).sort()).toEqual(
      handles.map((h) => h.replicaId).sort(),
    );
    for (const h of handles) expect(await b.status(h.replicaId)).toBe('running');
  });

  it('gives the replica its port in PORT and {port}, the spec environ and the model folder as cwd', async () => {
    const b = await backend();
    const cwd = tempDir();
    const script =
      'echo "arg=$1 port=$PORT greeting=$GREETING id=$FLOTILLA_REPLICA_ID cwd=$(pwd)"; exec sleep 60';
    const h = await b.start(
      'env-check',
      sessionSpec(['sh', '-c', script, MARKER, '--port={port}'], {
        environ: { GREETING: 'hi there' },
        workdir: cwd,
      }),
    );
    const line = await waitFor('the replica to print its environment', async () =>
      (await b.logs('env-check')).split('\n').find((l) => l.startsWith('arg=')),
    );
    expect(line).toBe(
      `arg=--port=${h.port} port=${h.port} greeting=hi there id=env-check cwd=${cwd}`,
    );
  });

  it('is idempotent per replica id: concurrent and repeated starts run one process', async () => {
    const b = await backend();
    const dir = markerDir();
    const [a, c] = await Promise.all([
      b.start('same', pythonSpec(dir)),
      b.start('same', pythonSpec(dir)),
    ]);
    const again = await b.start('same', pythonSpec(dir));
    expect(c.pid).toBe(a.pid);
    expect(again.pid).toBe(a.pid);
    expect(processesWith(MARKER), JSON.stringify(processesWith(MARKER))).toHaveLength(1);
  });

  it('close with stopReplicas also stops a replica whose start was still under way', async () => {
    const b = await backend();
    const starting = b.start('late', pythonSpec(markerDir()));
    await b.close({ stopReplicas: true, graceMs: 2000 });
    const h = await starting;
    expect(isAlive(h.pid!)).toBe(false);
    expect(processesWith(MARKER)).toEqual([]);
    await expect(b.start('after-close', pythonSpec(markerDir()))).rejects.toMatchObject({
      code: 'invalid_state',
    });
  });

  it('refuses a command that cannot run with a validation error and reserves nothing', async () => {
    const b = await backend({ capacity: { cpu: 1 } });
    const err = await b
      .start('bad', shellSpec('', MARKER, { command: ['/nonexistent/model-server', '{port}'] }))
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(FlotillaError);
    expect(err).toMatchObject({ code: 'validation' });
    expect((err as Error).message).toContain('/nonexistent/model-server');
    expect(b.capacity().used.cpu).toBe(0);
    expect(await b.status('bad')).toBe('unknown');
  });
});

describe('process backend: deaths and stops', () => {
  it('reports a kill -9 through onExit within one second and a supervisor brings the count back to three', async () => {
    const b = await backend();
    const dir = markerDir();
    const exits: ReplicaExit[] = [];
    let next = 3;
    const regenerated: Promise<ReplicaHandle>[] = [];
    b.onExit((exit) => {
      exits.push(exit);
      regenerated.push(b.start(`sup-${next++}`, pythonSpec(dir)));
    });
    const handles = await Promise.all([0, 1, 2].map((i) => b.start(`sup-${i}`, pythonSpec(dir))));
    await waitFor('three processes', () => processesWith(MARKER).length === 3);
    const victim = handles[1]!;
    const killedAt = Date.now();
    process.kill(victim.pid!, 'SIGKILL');
    const exit = await waitFor('the exit report', () => exits[0], 5000, 5);
    const latency = exit.at - killedAt;
    console.log(`kill -9 reported after ${latency} ms`);
    expect(latency).toBeLessThan(1000);
    expect(exit).toMatchObject({ replicaId: victim.replicaId, code: null, signal: 'SIGKILL' });
    expect(await b.status(victim.replicaId)).toBe('exited');
    const fresh = await regenerated[0]!;
    await waitFor(
      'the regenerated replica answering',
      async () => (await httpStatus(fresh.url)) === 200,
    );
    await waitFor('three processes again', () => processesWith(MARKER).length === 3);
    expect(exits).toHaveLength(1);
  });

  it('stops with SIGTERM first: a replica that traps TERM exits cleanly within the grace period', async () => {
    const b = await backend();
    const exits: ReplicaExit[] = [];
    b.onExit((e) => exits.push(e));
    const markFile = path.join(tempDir(), 'terminated');
    await b.start(
      'graceful',
      shellSpec(
        'trap \'echo "got TERM" > "$MARK_FILE"; exit 0\' TERM; echo ready; while :; do sleep 0.05; done',
        MARKER,
        { environ: { MARK_FILE: markFile } },
      ),
    );
    // Line-based: the backend's "starting replica" line is written once the process exists,
    // so the script's first output can come before it in the log.
    await waitFor('the trap to be installed', async () =>
      /(^|\n)ready\n/.test(await b.logs('graceful')),
    );
    const t0 = Date.now();
    await b.stop('graceful', 10_000);
    const took = Date.now() - t0;
    console.log(`graceful stop took ${took} ms (grace 10000 ms)`);
    expect(readFileSync(markFile, 'utf8')).toBe('got TERM\n');
    expect(took).toBeLessThan(10_000);
    expect(processesWith(MARKER)).toEqual([]);
    expect(await b.status('graceful')).toBe('exited');
    expect(exits, 'a stopped replica is not reported as dying on its own').toEqual([]);
  });

  it('kills the whole process group with SIGKILL when TERM is ignored past the grace period', async () => {
    const b = await backend();
    await b.start(
      'stubborn',
      shellSpec(
        // The child shell carries the marker too; `; :` keeps it from exec-ing into sleep.
        'trap "" TERM; sh -c "sleep 600; :" "$0-child" & echo ready; while :; do sleep 0.05; done',
        MARKER,
      ),
    );
    await waitFor('the replica to start', async () =>
      /(^|\n)ready\n/.test(await b.logs('stubborn')),
    );
    const members = await waitFor('the subshell to run', () => {
      const p = processesWith(MARKER);
      return p.length >= 2 ? p : null;
    });
    expect(new Set(members.map((m) => m.pgid)).size).toBe(1);
    const t0 = Date.now();
    await b.stop('stubborn', 700);
    const took = Date.now() - t0;
    console.log(`stop of a TERM-ignoring replica took ${took} ms (grace 700 ms)`);
    expect(took).toBeGreaterThanOrEqual(700);
    for (const m of members) expect(isAlive(m.pid)).toBe(false);
    expect(processesWith(MARKER)).toEqual([]);
    // Idempotent: stopping again, or stopping an unknown replica, resolves.
    await b.stop('stubborn', 700);
    await b.stop('never-started', 700);
  });

  it('kills the children of a replica whose leader died on its own (no orphans)', async () => {
    const b = await backend();
    const exits: ReplicaExit[] = [];
    b.onExit((e) => exits.push(e));
    const dir = markerDir();
    const h = await b.start(
      'wrapper',
      shellSpec(
        `python3 -m http.server "$PORT" --bind 127.0.0.1 --directory '${dir}' & wait`,
        MARKER,
      ),
    );
    await waitFor('python answering', async () => (await httpStatus(h.url)) === 200);
    expect(processesWith(MARKER)).toHaveLength(2);
    process.kill(h.pid!, 'SIGKILL');
    await waitFor('the exit report', () => exits.length === 1, 5000);
    await waitFor(
      'the orphaned python to be killed',
      () => processesWith(MARKER).length === 0,
      5000,
    );
  });

  it('keeps logs bounded by rotating past the cap', async () => {
    const cap = 64 * 1024;
    const dataDir = tempDir();
    const b = await backend({ dataDir, logCapBytes: cap });
    await b.start(
      'chatty',
      shellSpec(
        'i=0; while [ $i -lt 20000 ]; do echo "line $i ........................................................................"; i=$((i+1)); done; echo "all-$(echo written)"; exec sleep 600',
        MARKER,
      ),
    );
    const dir = path.join(dataDir, 'replicas', 'chatty');
    const size = (f: string) => {
      try {
        return statSync(path.join(dir, f)).size;
      } catch {
        return 0;
      }
    };
    await waitFor(
      'the output to be written and trimmed',
      async () => (await b.logs('chatty')).includes('all-written') && size('output.log') <= cap,
    );
    const tail = await b.logs('chatty', { tailBytes: 4096 });
    expect(tail.length).toBeLessThanOrEqual(4096);
    expect(tail).toContain('line 19999');
    expect(size('output.log.1')).toBeLessThanOrEqual(cap);
    console.log(
      `log sizes after 1.8 MB of output: ${size('output.log')} + ${size('output.log.1')} bytes`,
    );
  });
});

describe('process backend: coordinator restarts', () => {
  it('adopts live replicas after the coordinator crashed, without starting duplicates', async () => {
    const dataDir = tempDir();
    const fixture = spawn(
      process.execPath,
      [
        '--import',
        'tsx',
        'test/integration/backends/fixtures/coordinator.ts',
        dataDir,
        MARKER,
        '3',
      ],
      { cwd: REPO_ROOT, stdio: ['ignore', 'pipe', 'inherit'] },
    );
    children.push(fixture);
    let out = '';
    fixture.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
    });
    const before = (
      await waitFor('the fixture coordinator to start three replicas', () => {
        const line = out.split('\n').find((l) => l.startsWith('['));
        return line ? (JSON.parse(line) as ReplicaHandle[]) : null;
      })
    ).sort((x, y) => x.replicaId.localeCompare(y.replicaId));
    fixture.kill('SIGKILL'); // the coordinator crashes
    await waitFor(
      'the coordinator to be gone',
      () => fixture.exitCode !== null || fixture.signalCode !== null,
    );
    await Promise.all(
      before.map((h) =>
        waitFor(
          `${h.replicaId} answering`,
          async () => (await httpStatus(`${h.url}/health`)) === 200,
        ),
      ),
    );
    expect(processesWith(MARKER)).toHaveLength(3);

    const b = await backend({ dataDir });
    const exits: ReplicaExit[] = [];
    b.onExit((e) => exits.push(e));
    const adopted = (await b.list()).sort((x, y) => x.replicaId.localeCompare(y.replicaId));
    expect(adopted).toEqual(before);
    for (const h of before) {
      const again = await b.start(h.replicaId, echoSpec(MARKER));
      expect(again.pid).toBe(h.pid);
    }
    const procs = processesWith(MARKER);
    expect(procs.map((p) => p.pid).sort()).toEqual(before.map((h) => h.pid).sort());
    expect(b.capacity().used.cpu).toBeCloseTo(0.3);

    // An adopted replica is not our child; its death is still noticed within a second.
    const victim = before[0]!;
    const killedAt = Date.now();
    process.kill(victim.pid!, 'SIGKILL');
    const exit = await waitFor('the exit report', () => exits[0], 5000, 5);
    console.log(`kill -9 of an adopted replica reported after ${exit.at - killedAt} ms`);
    expect(exit.at - killedAt).toBeLessThan(1000);
    expect(exit).toMatchObject({ replicaId: victim.replicaId, code: null, signal: null });

    await b.close({ stopReplicas: true, graceMs: 5000 });
    expect(processesWith(MARKER)).toEqual([]);
  });

  it('reports a replica that died while no coordinator ran, and starts it anew on request', async () => {
    const dataDir = tempDir();
    const dir = markerDir();
    const first = await backend({ dataDir });
    const h = await first.start('lost', pythonSpec(dir));
    await first.close({ stopReplicas: false });
    expect(isAlive(h.pid!)).toBe(true);
    process.kill(h.pid!, 'SIGKILL');
    await waitFor('the replica to die', () => !isAlive(h.pid!));

    const second = await backend({ dataDir });
    expect(await second.status('lost')).toBe('exited');
    expect(await second.list()).toEqual([]);
    expect(second.capacity().used.cpu).toBe(0);
    const exits: ReplicaExit[] = [];
    second.onExit((e) => exits.push(e));
    await waitFor('the queued exit report', () => exits.length === 1, 5000);
    expect(exits[0]!.replicaId).toBe('lost');

    const fresh = await second.start('lost', pythonSpec(dir));
    expect(fresh.pid).not.toBe(h.pid);
    await waitFor('the new replica answering', async () => (await httpStatus(fresh.url)) === 200);
    expect(processesWith(MARKER)).toHaveLength(1);
  });

  it('does not adopt a recorded pid that now belongs to another process', async () => {
    const dataDir = tempDir();
    const first = await backend({ dataDir });
    const h = await first.start('reused', shellSpec('exec sleep 600', MARKER));
    await first.close({ stopReplicas: false });
    // Forge the record: same pid, different start time, as after pid reuse.
    const stateFile = path.join(dataDir, 'replicas', 'reused', 'state.json');
    const record = JSON.parse(readFileSync(stateFile, 'utf8'));
    record.startTicks -= 1;
    writeFileSync(stateFile, JSON.stringify(record));
    const second = await backend({ dataDir });
    expect(await second.status('reused')).toBe('exited');
    expect(await second.list()).toEqual([]);
    // Not ours any more, so close() must not kill it; clean up the real process by hand.
    await second.close({ stopReplicas: true });
    expect(isAlive(h.pid!)).toBe(true);
    process.kill(h.pid!, 'SIGKILL');
  });
});

describe('process backend: capacity', () => {
  it('does not start a replica that does not fit and names the reason', async () => {
    const b = await backend({ capacity: { cpu: 2, gpu: 0 } });
    const dir = markerDir();
    const err = await b
      .start('gpu-hungry', pythonSpec(dir, { resources: { cpu: 1, mem: 1024, gpu: 2 } }))
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(FlotillaError);
    expect(err).toMatchObject({
      code: 'insufficient_resources',
      message: 'insufficient gpu: requested 2, free 0',
    });
    expect(await b.status('gpu-hungry')).toBe('unknown');
    expect(processesWith(MARKER)).toEqual([]);
    expect(b.capacity()).toMatchObject({
      total: { cpu: 2, gpu: 0 },
      used: { cpu: 0, mem: 0, gpu: 0 },
    });
  });

  it('accounts cpu across replicas and releases it on stop and on death', async () => {
    const b = await backend({ capacity: { cpu: 2 } });
    const dir = markerDir();
    const oneCpu = () => pythonSpec(dir, { resources: { cpu: 1, mem: 1024, gpu: 0 } });
    const exits: ReplicaExit[] = [];
    b.onExit((e) => exits.push(e));
    await b.start('c1', oneCpu());
    const c2 = await b.start('c2', oneCpu());
    await expect(b.start('c3', oneCpu())).rejects.toMatchObject({
      code: 'insufficient_resources',
      message: 'insufficient cpu: requested 1, free 0',
    });
    expect(processesWith(MARKER), JSON.stringify(processesWith(MARKER))).toHaveLength(2);
    await b.stop('c1', 2000);
    expect(b.capacity().used.cpu).toBe(1);
    await b.start('c3', oneCpu());
    process.kill(c2.pid!, 'SIGKILL');
    await waitFor('the death to be noticed', () => exits.length === 1, 5000);
    expect(b.capacity().used.cpu).toBe(1);
    await b.start('c4', oneCpu());
    expect(processesWith(MARKER)).toHaveLength(2);
  });
});

describe('process backend: a replica spawned just before a crash', () => {
  it('stops the unrecorded process (its directory exists, its record does not) before starting the replica again', async () => {
    const dataDir = tempDir();
    const replicaId = 'crash-window-0';
    // What a crash between spawn and the record leaves: the replica's directory and log, and
    // a live process carrying the replica id, but no state.json.
    mkdirSync(path.join(dataDir, 'replicas', replicaId), { recursive: true });
    const orphan = spawn('sh', ['-c', 'sleep 60', MARKER], {
      detached: true,
      stdio: 'ignore',
      // No PORT: not a replica the backend spawned, so it cannot be adopted.
      env: { ...process.env, PORT: undefined, FLOTILLA_REPLICA_ID: replicaId },
    });
    children.push(orphan);
    const orphanPid = orphan.pid!;
    await waitFor('the orphan to run', () => isAlive(orphanPid));
    const b = await backend({ dataDir });
    const h = await b.start(replicaId, shellSpec('sleep 60', MARKER));
    await waitFor('the unrecorded process to stop', () => !isAlive(orphanPid));
    expect(h.pid).not.toBe(orphanPid);
    expect(processesWith(MARKER).map((p) => p.pgid)).toEqual([h.pid]);
    const log = readFileSync(path.join(dataDir, 'replicas', replicaId, 'output.log'), 'utf8');
    expect(log).toContain(`stopped process group ${orphanPid} of replica ${replicaId}`);
  });

  it('adopts the unrecorded process when it is the only one and carries its PORT, so the replica starts once', async () => {
    const dataDir = tempDir();
    const replicaId = 'crash-window-1';
    mkdirSync(path.join(dataDir, 'replicas', replicaId), { recursive: true });
    const orphan = spawn('sh', ['-c', 'sleep 60', MARKER], {
      detached: true,
      stdio: 'ignore',
      env: { ...process.env, PORT: '45678', FLOTILLA_REPLICA_ID: replicaId },
    });
    children.push(orphan);
    const orphanPid = orphan.pid!;
    await waitFor('the orphan to run', () => isAlive(orphanPid));
    const b = await backend({ dataDir });
    const h = await b.start(replicaId, shellSpec('sleep 60', MARKER));
    expect(h.pid).toBe(orphanPid);
    expect(h.port).toBe(45678);
    expect(isAlive(orphanPid)).toBe(true);
    expect(processesWith(MARKER).map((p) => p.pgid)).toEqual([orphanPid]);
    const log = readFileSync(path.join(dataDir, 'replicas', replicaId, 'output.log'), 'utf8');
    expect(log).toContain(
      `adopted process group ${orphanPid} of replica ${replicaId} on port 45678`,
    );
    // Its death is noticed like any replica's.
    const exits: string[] = [];
    b.onExit((e) => exits.push(e.replicaId));
    process.kill(-orphanPid, 'SIGKILL');
    await waitFor(
      "the adopted replica's death to be noticed",
      () => exits.includes(replicaId),
      5000,
    );
  });
});
