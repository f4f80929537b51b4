/**
 * Process facts read from Linux /proc. A pid alone does not identify a process across time (pids
 * are reused), so a replica is identified by pid + start time (field 22 of /proc/<pid>/stat,
 * clock ticks since boot) + boot id. Without /proc (not Linux) we fall back to kill(pid, 0) and
 * cannot detect pid reuse.
 */
import { execFileSync } from 'node:child_process';
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

/**
 * The fields of /proc/<pid>/stat after comm: fields[0] is field 3 (state), field n is
 * fields[n - 3]. Null when the text has no comm.
 */
export function statFields(stat: string): string[] | null {
  // comm (field 2) is in parentheses and may itself contain spaces or ')'.
  const close = stat.lastIndexOf(')');
  return close < 0 ? null : stat.slice(close + 2).split(' ');
}

export function readProcStat(pid: number): ProcStat | null {
  let text: string;
  try {
    text = readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return null;
  }
  const fields = statFields(text);
  if (!fields) return null;
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

/**
 * The process groups of live processes whose environment holds `name=value` (e.g. a replica's
 * FLOTILLA_REPLICA_ID): how a replica spawned just before a crash, before its record was
 * written, is still found. Reads every /proc/<pid>/environ; empty without /proc.
 */
export function groupsWithEnv(name: string, value: string): number[] {
  if (!hasProcFs()) return [];
  const needle = `${name}=${value}`;
  const groups = new Set<number>();
  for (const entry of readdirSync('/proc')) {
    const pid = Number(entry);
    if (!Number.isInteger(pid) || pid <= 0 || pid === process.pid) continue;
    let environ: string;
    try {
      environ = readFileSync(`/proc/${pid}/environ`, 'latin1');
    } catch {
      continue; // gone, or not ours to read
    }
    if (!environ.split('\0').includes(needle)) continue;
    const stat = readProcStat(pid);
    if (stat && !isDeadState(stat.state)) groups.add(stat.pgrp);
  }
  return [...groups];
}

/** The value of `name` in a live process's environment (as it was started); undefined if unknown. */
export function envOf(pid: number, name: string): string | undefined {
  try {
    const prefix = `${name}=`;
    const entry = readFileSync(`/proc/${pid}/environ`, 'latin1')
      .split('\0')
      .find((e) => e.startsWith(prefix));
    return entry?.slice(prefix.length);
  } catch {
    return undefined; // gone, or not ours to read
  }
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

let sysconfCache: { clockTicks: number; pageSize: number } | undefined;

/** CLK_TCK and the page size (`getconf`; 100 and 4096, Linux's usual values, without it). */
function sysconf(): { clockTicks: number; pageSize: number } {
  if (!sysconfCache) {
    const read = (name: string, fallback: number) => {
      try {
        const n = Number(execFileSync('getconf', [name], { encoding: 'utf8' }).trim());
        return Number.isInteger(n) && n > 0 ? n : fallback;
      } catch {
        return fallback;
      }
    };
    sysconfCache = { clockTicks: read('CLK_TCK', 100), pageSize: read('PAGESIZE', 4096) };
  }
  return sysconfCache;
}

/** CPU time and resident memory of one process. */
export interface ProcUsage {
  /**
   * utime + stime + cutime + cstime (fields 14-17 of /proc/<pid>/stat) in seconds: the process's
   * own CPU time plus that of its children it has reaped, so a group's total does not drop when
   * a member exits and its parent in the group reaps it.
   */
  cpuSeconds: number;
  /** Resident set (second field of /proc/<pid>/statm, in pages) in bytes. */
  rssBytes: number;
}

/** Null when the process is gone (or /proc is missing). */
export function readProcUsage(pid: number): ProcUsage | null {
  let stat: string;
  let statm: string;
  try {
    stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    statm = readFileSync(`/proc/${pid}/statm`, 'utf8');
  } catch {
    return null;
  }
  const fields = statFields(stat);
  if (!fields) return null;
  // utime 14, stime 15, cutime 16, cstime 17.
  const ticks = [11, 12, 13, 14].reduce((sum, i) => sum + Number(fields[i]), 0);
  const rssPages = Number(statm.split(' ')[1]);
  if (!Number.isFinite(ticks) || !Number.isFinite(rssPages)) return null;
  const { clockTicks, pageSize } = sysconf();
  return { cpuSeconds: ticks / clockTicks, rssBytes: rssPages * pageSize };
}

/**
 * The summed usage of every live member of each process group in `pgids`, from one scan of
 * /proc (a group with no live member is absent from the result). Shared pages count once per
 * process that maps them, as `ps` shows RSS.
 */
export function groupUsage(pgids: ReadonlySet<number>): Map<number, ProcUsage> {
  const out = new Map<number, ProcUsage>();
  if (!hasProcFs() || pgids.size === 0) return out;
  let entries: string[];
  try {
    entries = readdirSync('/proc');
  } catch {
    return out;
  }
  for (const entry of entries) {
    const pid = Number(entry);
    if (!Number.isInteger(pid) || pid <= 0) continue;
    const stat = readProcStat(pid);
    // Zombies too: their CPU time moves to the parent's cutime only when reaped.
    if (!stat || !pgids.has(stat.pgrp)) continue;
    const usage = readProcUsage(pid);
    if (!usage) continue;
    const sum = out.get(stat.pgrp) ?? { cpuSeconds: 0, rssBytes: 0 };
    sum.cpuSeconds += usage.cpuSeconds;
    sum.rssBytes += usage.rssBytes;
    out.set(stat.pgrp, sum);
  }
  return out;
}
