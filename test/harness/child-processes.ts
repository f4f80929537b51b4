import type { ChildProcess } from 'node:child_process';

/** SIGTERM each child still running, wait up to `graceMs` for it, then SIGKILL. */
export async function stopChildren(
  children: readonly ChildProcess[],
  graceMs = 20_000,
): Promise<void> {
  await Promise.all(
    children.map(async (c) => {
      if (c.exitCode !== null || c.signalCode !== null) return;
      const exited = new Promise((r) => c.once('exit', r));
      c.kill('SIGTERM');
      await Promise.race([exited, new Promise((r) => setTimeout(r, graceMs).unref())]);
      if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
    }),
  );
}
