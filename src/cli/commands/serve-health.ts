/**
 * What `/health` says in every process `serve` starts. Liveness, not readiness: 200 while the
 * process can do its role, 500 when it cannot and only a restart helps (the actor tree died,
 * the data plane stopped taking requests, the prober stopped). Dependencies that may come back
 * (database, Redis, etcd) are `/ready`'s business. A proxy's /health carries its load (level,
 * queue depth, in-flight counts), as graceful-degradation's "health stats" do.
 */
import type { ProberStats } from '../../health/prober.ts';
import type { ProxyHealthStats } from '../../proxy/proxy-server.ts';

// A type, not an interface: it must fit the apps' `Record<string, unknown>` health hooks.
export type HealthReport = {
  ok: boolean;
  status: 'ok' | 'failing';
  role: string;
  /** Why the process cannot serve its role; empty when ok. */
  problems: string[];
  /** The in-process proxy's load, when this process runs one. */
  load?: ProxyHealthStats;
  /** The in-process prober's counters, when this process runs one. */
  prober?: Pick<ProberStats, 'running' | 'owned' | 'inFlight' | 'probes' | 'storeErrors'>;
};

export interface HealthParts {
  role: string;
  /** The runtime's fatal failure (its actor tree died), or null. */
  runtimeFailure?: (() => string | null) | undefined;
  proxy?: { stats(): ProxyHealthStats } | null | undefined;
  prober?: { stats(): ProberStats } | null | undefined;
}

export function healthReport(parts: HealthParts): HealthReport {
  const problems: string[] = [];
  const failure = parts.runtimeFailure?.() ?? null;
  if (failure) problems.push(failure);
  const report: HealthReport = { ok: true, status: 'ok', role: parts.role, problems };
  if (parts.proxy) {
    const load = parts.proxy.stats();
    report.load = load;
    if (!load.serving) problems.push('proxy: closed, takes no requests');
  }
  if (parts.prober) {
    const { running, owned, inFlight, probes, storeErrors } = parts.prober.stats();
    report.prober = { running, owned, inFlight, probes, storeErrors };
    if (!running) problems.push('prober: stopped');
  }
  if (problems.length > 0) {
    report.ok = false;
    report.status = 'failing';
  }
  return report;
}
