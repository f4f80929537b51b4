/**
 * Commands against the API (create, scale, update, delete), one at a time, with a model of
 * what each acknowledged (2xx) command must have done. A command whose answer never came
 * (the coordinator died under it) may or may not have taken effect: both outcomes are allowed
 * until the next check, which adopts whichever the coordinator shows.
 */

import { type Answer, call, type DeploymentView, neverSent } from './http.ts';
import type { Rng } from './prng.ts';

export interface Desired {
  exists: boolean;
  replicas: number;
  gen: string;
}

export const BASE = ['b0', 'b1'];

export function deploymentBody(name: string, replicas: number, gen: string) {
  return {
    name,
    model_path: 'examples/echo',
    replicas,
    environ: { FAULTS_GEN: gen, ECHO_TOKEN_LATENCY_MS: '0' },
    health_check: { interval_s: 0.5, timeout_s: 1, unhealthy_threshold: 2 },
  };
}

function genOf(v: DeploymentView): string | undefined {
  return v.session?.environ?.FAULTS_GEN ?? v.revision?.environ?.FAULTS_GEN;
}

/**
 * Creates a base deployment (2 replicas); a starved PostgreSQL may answer 503
 * store_unavailable, so this tries again for a minute.
 */
export async function createWithRetry(api: string, name: string): Promise<void> {
  let last = '';
  for (let i = 0; i < 60; i++) {
    const r = await call(api, 'POST', '/v1/deployments', deploymentBody(name, 2, 'g0'), 20_000);
    last = `${r.status} ${JSON.stringify(r.body)}`;
    if (r.status === 201 || r.status === 409) return;
    if (r.status !== 503 && r.status !== 0) break;
    await new Promise((res) => setTimeout(res, 1_000));
  }
  throw new Error(`create ${name}: ${last}`);
}

export function matches(d: Desired, v: DeploymentView | undefined): boolean {
  if (!d.exists) return v === undefined || v.state === 'TERMINATED';
  return (
    v !== undefined &&
    v.state !== 'TERMINATED' &&
    v.state !== 'DESTROYING' &&
    v.target_replicas === d.replicas &&
    genOf(v) === d.gen
  );
}

export function describe(v: DeploymentView | undefined): string {
  return v ? `${v.state} target=${v.target_replicas} gen=${genOf(v)}` : 'absent';
}

export class Workload {
  readonly confirmed = new Map<string, Desired>();
  readonly pending = new Map<string, Desired[]>();
  acknowledged = 0;
  unknown = 0;
  refused = 0;
  log: string[] = [];
  private next = 0;
  private gen = 0;
  private running = false;
  private loop: Promise<void> | null = null;

  constructor(
    private readonly api: () => string,
    private readonly rand: Rng,
    private readonly maxExtra = 3,
  ) {}

  /** Creates the base deployments (traffic targets) and waits for nothing. */
  async seed(): Promise<void> {
    for (const name of BASE) {
      const d: Desired = { exists: true, replicas: 2, gen: 'g0' };
      await createWithRetry(this.api(), name);
      this.confirmed.set(name, d);
      this.acknowledged++;
    }
  }

  private believed(name: string): Desired | undefined {
    const p = this.pending.get(name);
    return p?.length ? p[p.length - 1] : this.confirmed.get(name);
  }

  /** One seeded command. */
  async step(): Promise<void> {
    const names = [...this.confirmed.keys()].filter(
      (n) => this.confirmed.get(n)!.exists && !this.pending.get(n)?.length,
    );
    const extras = names.filter((n) => !BASE.includes(n));
    const r = this.rand.next();
    if (r < 0.2 && extras.length < this.maxExtra) {
      const name = `w${this.next++}`;
      const d: Desired = { exists: true, replicas: this.rand.int(1, 2), gen: `g${++this.gen}` };
      await this.send(
        name,
        d,
        'POST',
        '/v1/deployments',
        deploymentBody(name, d.replicas, d.gen),
        201,
      );
      return;
    }
    if (names.length === 0) return;
    const name = this.rand.pick(names);
    const cur = this.believed(name)!;
    const base = BASE.includes(name);
    if (r < 0.5) {
      const replicas = base ? this.rand.int(2, 3) : this.rand.int(0, 3);
      await this.send(
        name,
        { ...cur, replicas },
        'POST',
        `/v1/deployments/${name}/scale`,
        { replicas },
        200,
      );
    } else if (r < 0.75) {
      const gen = `g${++this.gen}`;
      await this.send(
        name,
        { ...cur, gen },
        'PATCH',
        `/v1/deployments/${name}`,
        { environ: { FAULTS_GEN: gen, ECHO_TOKEN_LATENCY_MS: '0' } },
        200,
      );
    } else if (!base) {
      await this.send(
        name,
        { ...cur, exists: false },
        'DELETE',
        `/v1/deployments/${name}`,
        undefined,
        202,
      );
    }
  }

  private async send(
    name: string,
    d: Desired,
    method: string,
    path: string,
    body: unknown,
    ok: number,
  ) {
    const a: Answer = await call(this.api(), method, path, body, 10_000);
    const tag = `${method} ${path} -> ${a.status || a.error}`;
    this.log.push(tag);
    if (a.status === ok) {
      this.acknowledged++;
      this.confirmed.set(name, d);
      this.pending.delete(name);
    } else if (a.status >= 400 && a.status < 500) {
      // Refused: no effect. (A create whose earlier attempt is unknown may answer 409.)
      this.refused++;
    } else if (neverSent(a)) {
      this.refused++;
    } else {
      // 5xx or no answer: the effect may or may not have happened.
      this.unknown++;
      const list = this.pending.get(name) ?? [];
      list.push(d);
      this.pending.set(name, list);
      if (!this.confirmed.has(name))
        this.confirmed.set(name, { exists: false, replicas: 0, gen: '' });
    }
  }

  start(pause: () => number): void {
    this.running = true;
    this.loop = (async () => {
      while (this.running) {
        await this.step();
        await new Promise((r) => setTimeout(r, pause()));
      }
    })();
  }

  async stop(): Promise<void> {
    this.running = false;
    await this.loop;
    this.loop = null;
  }

  /**
   * Compares the coordinator's deployments with the model. Returns the names whose
   * acknowledged state is missing; adopts what is shown for commands of unknown outcome.
   */
  check(views: DeploymentView[]): { lost: string[] } {
    const byName = new Map(views.filter((v) => v.state !== 'TERMINATED').map((v) => [v.name, v]));
    const lost: string[] = [];
    for (const [name, c] of this.confirmed) {
      const v = byName.get(name);
      const allowed = [c, ...(this.pending.get(name) ?? [])];
      const hit = allowed.find((d) => matches(d, v));
      if (hit) {
        this.confirmed.set(name, hit);
        this.pending.delete(name);
      } else {
        lost.push(
          `${name}: acknowledged ${JSON.stringify(c)}${allowed.length > 1 ? ` (or unknown ${JSON.stringify(allowed.slice(1))})` : ''}, coordinator shows ${describe(v)}`,
        );
        // Go on from what is there, so one loss is counted once.
        this.confirmed.set(
          name,
          v
            ? {
                exists: true,
                replicas: v.target_replicas,
                gen: v.session?.environ?.FAULTS_GEN ?? '',
              }
            : { exists: false, replicas: 0, gen: '' },
        );
        this.pending.delete(name);
      }
    }
    for (const v of byName.values()) {
      if (!this.confirmed.has(v.name))
        lost.push(`${v.name}: exists (${describe(v)}) but no command created it`);
    }
    return { lost };
  }

  /** Names that should exist now. */
  live(): string[] {
    return [...this.confirmed].filter(([, d]) => d.exists).map(([n]) => n);
  }
}
