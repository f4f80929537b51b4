/**
 * Process facts read from Linux /proc. A pid alone does not identify a process across time (pids
 * are reused), so a replica is identified by pid + start time (field 22 of /proc/<pid>/stat,
 * clock ticks since boot) + boot id. Without /proc (not Linux) we fall back to kill(pid, 0) and
 * cannot detect pid reuse.
 */
import { readdirSync, readFileSync } from 'node:fs';

export interface ProcStat {
  pid: number;
  /** R, S, D, Z (zombie), X (dead), T, ... */
  state: string;
  ppid: number;
  pgrp: number;
  /** Start time in clock ticks after boot. */
  startTicks: number;
}

let procAvailable: boolean | undefined;

export function hasProcFs(): boolean {
  if (procAvailable === undefined) {
    try {
      readFileSync('/proc/self/stat', 'utf8');
      procAvailable = true;
    } catch {
      procAvailable = false;
    }
  }
  return procAvailable;
}

export function readProcStat(pid: number): ProcStat | null {
  let text: string;
  try {
    text = readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return null;
  }
  // comm (field 2) is in parentheses and may itself contain spaces or ')'.
  const close = text.lastIndexOf(')');
  if (close < 0) return null;
  const fields = text.slice(close + 2).split(' ');
  // fields[0] is field 3 (state); field n is fields[n - 3].
  const state = fields[0];
  const ppid = Number(fields[1]);
  const pgrp = Number(fields[2]);
  const startTicks = Number(fields[19]);
  if (state === undefined || !Number.isFinite(startTicks)) return null;
  return { pid, state, ppid, pgrp, startTicks };
}

let cachedBootId: string | null | undefined;

/** Changes on every reboot; a recorded pid from another boot is never alive. */
export function bootId(): string | null {
  if (cachedBootId === undefined) {
    try {
      cachedBootId = readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim();
    } catch {
      cachedBootId = null;
    }
  }
  return cachedBootId;
}

function isDeadState(state: string): boolean {
  return state === 'Z' || state === 'X' || state === 'x';
}

/**
 * Is the process that was started as `pid` at `startTicks` still running? Zombies count as
 * dead: their exit is final, only the reaping is missing.
 */
export function isProcessAlive(pid: number, startTicks: number | null): boolean {
  if (!hasProcFs()) return signalZero(pid);
  const stat = readProcStat(pid);
  if (!stat || isDeadState(stat.state)) return false;
  return startTicks === null || stat.startTicks === startTicks;
}

function signalZero(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Live (non-zombie) members of process group `pgid`. */
export function groupMembers(pgid: number): number[] {
  if (!hasProcFs()) return signalZero(-pgid) ? [pgid] : [];
  // Cheap first check: no process at all in the group.
  if (!signalZero(-pgid)) return [];
  const members: number[] = [];
  let entries: string[];
  try {
    entries = readdirSync('/proc');
  } catch {
    return [pgid];
  }
  for (const entry of entries) {
    const pid = Number(entry);
    if (!Number.isInteger(pid) || pid <= 0) continue;
    const stat = readProcStat(pid);
    if (stat && stat.pgrp === pgid && !isDeadState(stat.state)) members.push(pid);
  }
  return members;
}

/** Signals a whole process group; false when it no longer exists. */
export function signalGroup(pgid: number, signal: NodeJS.Signals): boolean {
  try {
    process.kill(-pgid, signal);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}
