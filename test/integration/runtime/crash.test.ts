/**
 * Crash tests: a child process hosts the runtime and runs a seeded random workload; it is
 * stopped at random points (kill -9, or a clean SIGTERM) and restarted, 20 times per store.
 * After each restart every restored actor must be in its last persisted state; at the end the
 * fleet must converge to its targets with no replica id ever started twice and no orphan.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { describe, expect, it } from 'vitest';
import { doubleStarts, liveFromEvents, readEvents } from '../../harness/fake-backend.ts';
import { isolatedDatabase } from '../../harness/isolation.ts';

const repo = resolve(import.meta.dirname, '../../..');
const host = join(repo, 'test/harness/crash-host.ts');
const CYCLES = 20;

interface Host {
  child: ChildProcess;
  restored: Promise<{ restored: Record<string, string>; persisted: Record<string, string> }>;
  exited: Promise<number | null>;
}

function startHost(env: Record<string, string>): Host {
  const child = spawn(process.execPath, ['--import', 'tsx', host], {
    cwd: repo,
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const lines = createInterface({ input: child.stdout! });
  const restored = new Promise<Host extends { restored: Promise<infer R> } ? R : never>(
    (res, rej) => {
      lines.on('line', (l) => {
        try {
          const o = JSON.parse(l);
          if (o.restored) res(o);
        } catch {
          // not ours
        }
      });
      child.once('exit', (code) => rej(new Error(`host exited (${code}) before restoring`)));
    },
  );
  restored.catch(() => {});
  const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
  return { child, restored, exited };
}

function mulberry32(a: number) {
  return () => {
    a = (a + 0x6d2b79f5) | 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

describe.each(['postgres', 'embedded'] as const)('crash and restore on %s', (kind) => {
  it(`restores every actor to its last persisted state across ${CYCLES} random stops and converges with no duplicate sessions`, async (ctx) => {
    const seed = Number(process.env.FLOTILLA_TEST_SEED ?? Date.now() % 100_000);
    console.log(`[crash:${kind}] seed ${seed} (set FLOTILLA_TEST_SEED to replay)`);
    const rand = mulberry32(seed);
    const { url } = await isolatedDatabase(ctx);
    const dir = mkdtempSync(join(tmpdir(), 'flotilla-crash-'));
    const env = {
      CRASH_DATABASE_URL: kind === 'postgres' ? url : '',
      CRASH_DATA_DIR: dir,
      CRASH_BACKEND_LOG: join(dir, 'backend.jsonl'),
    };
    let kills = 0;
    let cleanStops = 0;
    let restoredActors = 0;
    for (let cycle = 0; cycle < CYCLES; cycle++) {
      const h = startHost({
        ...env,
        CRASH_SEED: String(seed * 100 + cycle),
        CRASH_NAME_BASE: String(cycle * 100),
      });
      const { restored, persisted } = await h.restored;
      // Every restored actor is in the state its last persisted row holds (rows read before restore).
      for (const [actorId, state] of Object.entries(restored)) {
        expect(persisted[actorId], `${actorId} (cycle ${cycle}, seed ${seed})`).toBe(state);
      }
      // And every persisted non-terminal actor of a live deployment was restored.
      for (const [actorId, state] of Object.entries(persisted)) {
        if (state !== 'TERMINATED')
          expect(restored[actorId], `${actorId} restored (cycle ${cycle})`).toBe(state);
      }
      restoredActors += Object.keys(restored).length;
      await new Promise((r) => setTimeout(r, 100 + Math.floor(rand() * 500)));
      if (rand() < 0.6) {
        h.child.kill('SIGKILL');
        kills++;
      } else {
        h.child.kill('SIGTERM');
        cleanStops++;
      }
      await h.exited;
    }
    // Let the fleet converge with no more operations.
    const resultFile = join(dir, 'result.json');
    const settle = startHost({
      ...env,
      CRASH_SEED: String(seed),
      CRASH_MODE: 'settle',
      CRASH_RESULT: resultFile,
    });
    await settle.restored;
    expect(await settle.exited).toBe(0);
    const result = JSON.parse(readFileSync(resultFile, 'utf8')) as {
      settled: boolean;
      deployments: unknown[];
      liveReplicaIds: string[];
      backendLive: string[];
    };
    const events = readEvents(env.CRASH_BACKEND_LOG);
    console.log(
      `[crash:${kind}] ${kills} kill -9, ${cleanStops} clean stops, ${restoredActors} actors restored, ` +
        `${events.filter((e) => e.op === 'start').length} sessions started, ${events.filter((e) => e.op === 'adopt').length} adopted, ` +
        `${result.deployments.length} deployments`,
    );
    expect(result.settled, JSON.stringify(result.deployments)).toBe(true);
    expect(doubleStarts(events)).toEqual([]);
    expect([...liveFromEvents(events)].sort()).toEqual([...result.liveReplicaIds].sort());
    expect([...result.backendLive].sort()).toEqual([...result.liveReplicaIds].sort());
    expect(kills + cleanStops).toBe(CYCLES);
  }, 300_000);
});
