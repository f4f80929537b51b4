/**
 * How many NVIDIA GPUs this machine has, from `nvidia-smi -L` (one `GPU n: ...` line each),
 * for `serve` when `--capacity gpu=N` is not given. Undefined when nvidia-smi is absent or
 * fails: the backend's default (0 GPUs) then applies.
 */
import { execFile } from 'node:child_process';

export type RunCommand = (cmd: string, args: string[]) => Promise<string>;

const runNvidiaSmi: RunCommand = (cmd, args) =>
  new Promise((resolve, reject) => {
    execFile(cmd, args, { timeout: 5_000 }, (err, stdout) => (err ? reject(err) : resolve(stdout)));
  });

/** Counts the `GPU n:` lines of `nvidia-smi -L`. */
export function countGpuLines(listing: string): number {
  return listing.split('\n').filter((l) => /^GPU \d+:/.test(l.trim())).length;
}

export async function detectGpuCount(run: RunCommand = runNvidiaSmi): Promise<number | undefined> {
  try {
    return countGpuLines(await run('nvidia-smi', ['-L']));
  } catch {
    // No nvidia-smi (ENOENT) or no driver loaded: no GPUs we could give to replicas.
    return undefined;
  }
}
