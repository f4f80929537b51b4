/**
 * `npm run faults`: the fault suite. Real processes throughout — `flotilla serve` roles
 * (compiled), echo replicas (process backend), and the suite's own PostgreSQL, Redis and etcd
 * on free ports (never the system's). Each scenario is seeded; the seed is printed and
 * `--seed S` replays the same fault points and workload (timing still varies).
 *
 *   npm run faults -- [--scenario NAME[,NAME]] [--seed S] [--runs N|NAME=N,...] [--quick] [--outage-s S]
 *                     [--no-write] [--max-min M]
 *
 * Prints each scenario's figures and rewrites the table in docs/reliability.md between its
 * markers (unless --no-write). `--max-min M`: no new fault point starts M minutes after the suite
 * started (scenarios that honour it report the points they ran).
 */

import { mkdtempSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import type { Context, Scenario } from './lib/context.ts';
import type { Figures } from './lib/figures.ts';
import { rng } from './lib/prng.ts';
import { printFigures, writeReport } from './lib/report.ts';
import { coordinatorKill } from './scenarios/coordinator-kill.ts';
import { etcdLeader } from './scenarios/etcd-leader.ts';
import { overload } from './scenarios/overload.ts';
import { postgresOutage } from './scenarios/postgres-outage.ts';
import { redisOutage } from './scenarios/redis-outage.ts';
import { replicaChaos } from './scenarios/replica-chaos.ts';

export const SCENARIOS: Scenario[] = [
  coordinatorKill,
  redisOutage,
  postgresOutage,
  etcdLeader,
  replicaChaos,
  overload,
];

export interface RunOptions {
  scenarios?: string[];
  seed?: number;
  /** Runs per variant, for every scenario or per scenario name. */
  runs?: number | Record<string, number>;
  quick?: boolean;
  outageS?: number;
  /** performance.now() after which no new fault point starts. */
  stopAt?: number;
  log?: (msg: string) => void;
  /** Called with each scenario's rows as soon as it finished. */
  onScenario?: (rows: Figures[]) => void;
}

/** A context for one scenario (the e2e test runs scenarios through it). */
export function scenarioContext(
  s: Scenario,
  o: RunOptions & { seed: number; logRoot: string },
): Context {
  return {
    seed: o.seed,
    rand: rng(o.seed).fork(s.name),
    runs:
      (typeof o.runs === 'number' ? o.runs : o.runs?.[s.name]) ??
      (o.quick ? s.defaultRuns.quick : s.defaultRuns.full),
    quick: o.quick ?? false,
    outageMs: (o.outageS ?? (o.quick ? 5 : 30)) * 1000,
    runId: `${s.name}-${o.seed}-${process.pid}`,
    logDir: join(o.logRoot, s.name),
    log: o.log ?? ((m: string) => console.log(m)),
    stopAt: o.stopAt,
  };
}

/** Runs the chosen scenarios one after another; returns every figures row. */
export async function runSuite(o: RunOptions): Promise<{ rows: Figures[]; seed: number }> {
  const seed = o.seed ?? Math.floor(Math.random() * 2 ** 31) >>> 0;
  const log = o.log ?? ((m: string) => console.log(m));
  const chosen = o.scenarios?.length
    ? o.scenarios.map((n) => {
        const s = SCENARIOS.find((x) => x.name === n);
        if (!s)
          throw new Error(
            `unknown scenario "${n}"; known: ${SCENARIOS.map((x) => x.name).join(', ')}`,
          );
        return s;
      })
    : SCENARIOS;
  log(`fault suite: seed ${seed} (replay with --seed ${seed}), ${o.quick ? 'quick' : 'full'} mode`);
  const logRoot = mkdtempSync(join(tmpdir(), 'flotilla-faults-logs-'));
  log(`process logs under ${logRoot}`);
  const rows: Figures[] = [];
  for (const s of chosen) {
    const ctx = scenarioContext(s, { ...o, seed, logRoot, log });
    log(`\n# ${s.name}: ${s.title} (${ctx.runs} runs per variant)`);
    const got = await s.run(ctx);
    rows.push(...got);
    o.onScenario?.(got);
  }
  return { rows, seed };
}

async function main(): Promise<number> {
  const { values } = parseArgs({
    options: {
      scenario: { type: 'string', multiple: true },
      seed: { type: 'string' },
      runs: { type: 'string' },
      quick: { type: 'boolean' },
      'outage-s': { type: 'string' },
      'no-write': { type: 'boolean' },
      'max-min': { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) {
    console.log(
      `usage: npm run faults -- [--scenario NAME] [--seed S] [--runs N] [--quick] [--outage-s S] [--no-write] [--max-min M]\nscenarios: ${SCENARIOS.map((s) => s.name).join(', ')}`,
    );
    return 0;
  }
  const num = (name: string, v: string | undefined) => {
    if (v === undefined) return undefined;
    const n = Number(v);
    if (!Number.isFinite(n) || n < 0)
      throw new Error(`--${name}: expected a non-negative number, got "${v}"`);
    return n;
  };
  const t0 = performance.now();
  const path = resolve(import.meta.dirname, '../docs/reliability.md');
  const command = `npm run faults -- ${process.argv.slice(2).join(' ')}`.trim();
  const date = `${new Date().toISOString().slice(0, 16).replace('T', ' ')} UTC`;
  let seedUsed = 0;
  // The machine's load, sampled while the suite runs: the figures depend on it.
  const load = { start: loadavg()[0] ?? 0, max: loadavg()[0] ?? 0 };
  const loadSampler = setInterval(() => {
    load.max = Math.max(load.max, loadavg()[0] ?? 0);
  }, 5000);
  loadSampler.unref();
  const write = (rows: Figures[]) => {
    if (values['no-write']) return;
    writeReport(path, rows, {
      seed: seedUsed,
      quick: values.quick ?? false,
      command,
      durationMs: performance.now() - t0,
      date,
      load: { ...load },
    });
    console.log(`table written to ${path}`);
  };
  const seedGiven = num('seed', values.seed);
  seedUsed = seedGiven ?? Math.floor(Math.random() * 2 ** 31) >>> 0;
  const { rows, seed } = await runSuite({
    scenarios: values.scenario?.flatMap((s) => s.split(',')),
    seed: seedUsed,
    runs: values.runs?.includes('=')
      ? Object.fromEntries(
          values.runs.split(',').map((kv) => {
            const [k, v] = kv.split('=');
            return [k ?? '', num('runs', v) ?? 0];
          }),
        )
      : num('runs', values.runs),
    quick: values.quick ?? false,
    outageS: num('outage-s', values['outage-s']),
    stopAt:
      values['max-min'] === undefined
        ? undefined
        : t0 + (num('max-min', values['max-min']) ?? 0) * 60_000,
    // Each scenario's rows are written as soon as it ends: an interrupted run keeps them.
    onScenario: write,
  });
  for (const f of rows) printFigures(f);
  const durationMs = performance.now() - t0;
  console.log(`\nfault suite: ${(durationMs / 60_000).toFixed(1)} min, seed ${seed}`);
  write(rows);
  return rows.some((f) => f.violations.length > 0) ? 1 : 0;
}

if (import.meta.url === `file://${process.argv[1]}`) {
  main().then(
    (code) => process.exit(code),
    (err) => {
      console.error(err);
      process.exit(2);
    },
  );
}
