/**
 * `--wait`: polls one deployment until a verdict, printing a progress line whenever what an
 * operator sees changes (state, HEALTHY count, replica states, reason).
 */
import { setTimeout as sleep } from 'node:timers/promises';
import type { DeploymentView } from '../index.ts';
import { enc } from './args.ts';
import { progressLine } from './format.ts';
import type { ApiClient } from './http-client.ts';

/** null: keep waiting; otherwise the outcome and the line that says it. */
export type Verdict = { ok: boolean; message: string } | null;

export interface WaitOptions {
  timeoutS: number;
  verdict: (v: DeploymentView) => Verdict;
  /** Where progress lines go (stderr when stdout carries JSON). */
  print: (line: string) => void;
  intervalMs?: number;
}

export async function waitForDeployment(
  client: ApiClient,
  id: string,
  opts: WaitOptions,
): Promise<{ ok: boolean; message: string; view: DeploymentView }> {
  const started = Date.now();
  const deadline = started + opts.timeoutS * 1000;
  let last = '';
  for (;;) {
    const view = await client.get<DeploymentView>(`/v1/deployments/${enc(id)}`);
    const line = progressLine(view);
    if (line !== last) {
      const t = ((Date.now() - started) / 1000).toFixed(1).padStart(5);
      opts.print(`[${t}s] ${line}`);
      last = line;
    }
    const v = opts.verdict(view);
    if (v) return { ...v, view };
    if (Date.now() > deadline) {
      return {
        ok: false,
        message: `timed out after ${opts.timeoutS} s: ${view.name} is ${view.state}${view.reason ? ` (${view.reason})` : ''}`,
        view,
      };
    }
    await sleep(opts.intervalMs ?? 500);
  }
}

/**
 * How `deploy --wait`, `scale --wait` and `rm --wait` end: the view as JSON (with --json), the
 * verdict on stdout when it holds, else on stderr; returns the exit code.
 */
export function reportOutcome(
  cmd: string,
  outcome: { ok: boolean; message: string; view: DeploymentView },
  json: boolean,
): number {
  if (json) console.log(JSON.stringify(outcome.view, null, 2));
  if (outcome.ok) {
    if (!json) console.log(outcome.message);
    return 0;
  }
  console.error(`flotilla ${cmd}: ${outcome.message}`);
  return 1;
}

/** RUNNING with every target replica HEALTHY; ERROR or deletion fails. */
export function runningVerdict(v: DeploymentView): Verdict {
  if (v.state === 'RUNNING' && v.healthy_replicas >= v.target_replicas) {
    return {
      ok: true,
      message: `${v.name} is RUNNING: ${v.healthy_replicas}/${v.target_replicas} replicas HEALTHY`,
    };
  }
  if (v.state === 'ERROR')
    return { ok: false, message: `${v.name} failed: ${v.reason ?? 'ERROR'}` };
  if (v.state === 'DESTROYING' || v.state === 'TERMINATED') {
    return { ok: false, message: `${v.name} is ${v.state} (deleted while waiting)` };
  }
  return null;
}
