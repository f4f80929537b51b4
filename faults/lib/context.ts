import type { Figures } from './figures.ts';
import type { Rng } from './prng.ts';

export interface Context {
  seed: number;
  rand: Rng;
  /** Fault points / outages per variant. */
  runs: number;
  quick: boolean;
  /** Outage length for the dependency scenarios, ms. */
  outageMs: number;
  /** A unique id for this scenario's processes (FAULTS_RUN). */
  runId: string;
  logDir: string;
  log: (msg: string) => void;
  /** performance.now() after which a scenario starts no new fault point (`--max-min`). */
  stopAt?: number;
}

export interface Scenario {
  /** Short name, used by --scenario. */
  name: string;
  /** One line for the table. */
  title: string;
  /** Full runs per variant (used when --runs is not given). */
  defaultRuns: { full: number; quick: number };
  run(ctx: Context): Promise<Figures[]>;
}
