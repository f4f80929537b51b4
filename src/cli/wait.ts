/**
 * `--wait`: polls one deployment until a verdict, printing a progress line whenever what an
 * operator sees changes (state, HEALTHY count, replica states, reason).
 */
import { setTimeout as sleep } from 'node:timers/promises';
import type { ParseArgsConfig } from 'node:util';
import type { DeploymentView } from '../index.ts';
import { enc, intFlag, usageError } from './args.ts';
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

/** The flags of the commands that can wait for their outcome (deploy, scale, rm). */
export const WAIT_OPTIONS = {
  wait: { type: 'boolean' },
  timeout: { type: 'string' },
} as const satisfies ParseArgsConfig['options'];

export interface WaitFlags {
  wait: boolean;
  json: boolean;
  /** `--timeout`, default 300. */
  timeoutS: number;
}

/** `--wait`, `--timeout` and `--json` as `showOrWait` takes them, or a usage error's exit code. */
export function waitFlags(
  cmd: string,
  values: { wait?: boolean | undefined; timeout?: string | undefined; json?: boolean | undefined },
): WaitFlags | number {
  const timeout = intFlag('--timeout', values.timeout, { min: 1 }) ?? 300;
  if (typeof timeout === 'string') return usageError(cmd, timeout);
  return { wait: values.wait === true, json: values.json === true, timeoutS: timeout };
}

/**
 * How deploy, scale and rm end once the API answered with `view`: without --wait, the view as
 * JSON (with --json) or `line`; with --wait, progress lines (on stderr with --json, after
 * `announce` when given) until `verdict` decides, then `reportOutcome`.
 */
export async function showOrWait(
  cmd: string,
  client: ApiClient,
  view: DeploymentView,
  flags: WaitFlags,
  says: { line: string; announce?: string; verdict: (v: DeploymentView) => Verdict },
): Promise<number> {
  if (!flags.wait) {
    console.log(flags.json ? JSON.stringify(view, null, 2) : says.line);
    return 0;
  }
  const print = flags.json ? (l: string) => console.error(l) : (l: string) => console.log(l);
  if (says.announce !== undefined) print(says.announce);
  const outcome = await waitForDeployment(client, view.id, {
    timeoutS: flags.timeoutS,
    verdict: says.verdict,
    print,
  });
  return reportOutcome(cmd, outcome, flags.json);
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
