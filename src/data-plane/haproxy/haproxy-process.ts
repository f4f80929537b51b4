/**
 * One HAProxy in master-worker mode (`-W -S <master socket>`) as a child process: started,
 * reloaded without dropping connections (the new worker takes the listeners from the old one
 * through the admin socket's `expose-fd listeners`; the old one finishes its requests), and
 * stopped. Its output goes to the logger as JSON lines, never to our stdout/stderr.
 */
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import type { Logger } from 'pino';
import type { HaproxyPaths } from './config.ts';
import { runtimeCommand } from './runtime-api.ts';

export interface HaproxyProcess {
  readonly pid: number;
  /** The current worker's pid (`show info` on the admin socket). */
  workerPid(): Promise<number | null>;
  /** Checks the written config, then reloads and waits for the new worker; throws if refused. */
  reload(): Promise<void>;
  /**
   * Soft stop: no new connection; requests in flight finish until `idle()` says none is left
   * or `graceMs` passed, then a hard stop (idle keep-alive client connections would otherwise
   * hold the old worker).
   */
  stop(graceMs: number, idle: () => Promise<boolean>): Promise<void>;
  /** Called once if HAProxy exits on its own. */
  onExit(listener: (code: number | null, signal: string | null) => void): void;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** `haproxy -c -f <config>`: null when valid, else HAProxy's complaint. */
export function checkConfig(binary: string, config: string): Promise<string | null> {
  return new Promise((resolve) => {
    execFile(binary, ['-c', '-f', config], (err, stdout, stderr) => {
      resolve(err ? `${stdout}${stderr}`.trim() || err.message : null);
    });
  });
}

export async function workerPidAt(adminSocket: string): Promise<number | null> {
  try {
    const info = await runtimeCommand(adminSocket, 'show info', 2_000);
    const m = /^Pid:\s*(\d+)/m.exec(info);
    return m ? Number(m[1]) : null;
  } catch {
    return null;
  }
}

async function until<T>(
  what: string,
  timeoutMs: number,
  check: () => Promise<T | null>,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await check();
    if (v !== null) return v;
    if (Date.now() > deadline) throw new Error(`haproxy: ${what} within ${timeoutMs} ms`);
    await sleep(25);
  }
}

export async function startHaproxy(opts: {
  binary: string;
  paths: HaproxyPaths;
  logger: Logger;
  startTimeoutMs?: number;
}): Promise<HaproxyProcess> {
  const { binary, paths, logger } = opts;
  const problem = await checkConfig(binary, paths.config);
  if (problem) throw new Error(`haproxy refused the generated configuration: ${problem}`);
  const child: ChildProcess = spawn(
    binary,
    ['-W', '-S', `${paths.masterSocket},mode,600`, '-f', paths.config],
    {
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  const exitListeners: ((code: number | null, signal: string | null) => void)[] = [];
  let exited = false;
  let stopping = false;
  const exitPromise = new Promise<void>((resolve) => {
    child.once('exit', (code, signal) => {
      exited = true;
      resolve();
      if (!stopping) {
        logger.error({ code, signal }, 'haproxy exited');
        for (const l of exitListeners) l(code, signal);
      }
    });
  });
  const spawnError = new Promise<never>((_, reject) => child.once('error', reject));
  // Safe: the rejection is awaited in the start race below; this only keeps a spawn error
  // that comes after the race was settled from being an unhandled rejection.
  spawnError.catch(() => {});
  for (const stream of [child.stdout, child.stderr]) {
    if (!stream) continue;
    createInterface({ input: stream }).on('line', (line) => {
      if (!line.trim()) return;
      // HAProxy's warnings are mostly our own doing (a server put in maintenance, a reload).
      const level = /\[(ALERT|EMERG)\]/.test(line) ? 'warn' : 'info';
      logger[level]({ haproxy: line }, 'haproxy');
    });
  }
  try {
    await Promise.race([
      spawnError,
      exitPromise.then(() => {
        throw new Error('haproxy exited while starting (see its log lines)');
      }),
      until('first worker not up', opts.startTimeoutMs ?? 15_000, () =>
        workerPidAt(paths.adminSocket),
      ),
    ]);
  } catch (err) {
    if (!exited) child.kill('SIGKILL');
    throw err;
  }
  const pid = child.pid ?? 0;
  return {
    pid,
    workerPid: () => workerPidAt(paths.adminSocket),
    async reload() {
      const refused = await checkConfig(binary, paths.config);
      if (refused) throw new Error(`haproxy refused the new configuration: ${refused}`);
      const old = await workerPidAt(paths.adminSocket);
      // SIGUSR2 to the master = `reload` on its CLI; the new worker binds the admin socket anew.
      child.kill('SIGUSR2');
      await until('no new worker after reload', 15_000, async () => {
        const now = await workerPidAt(paths.adminSocket);
        return now !== null && now !== old ? now : null;
      });
    },
    async stop(graceMs, idle) {
      stopping = true;
      if (exited) return;
      child.kill('SIGUSR1'); // soft stop: listeners closed, requests in flight finish
      const deadline = Date.now() + graceMs;
      while (!exited && Date.now() < deadline && !(await idle().catch(() => true))) await sleep(25);
      if (exited) return;
      child.kill('SIGTERM');
      const hard = await Promise.race([
        exitPromise.then(() => true),
        sleep(2_000).then(() => false),
      ]);
      if (!hard) {
        child.kill('SIGKILL');
        await exitPromise;
      }
    },
    onExit(listener) {
      exitListeners.push(listener);
    },
  };
}
