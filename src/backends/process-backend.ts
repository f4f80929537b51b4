/**
 * The default backend: each replica is a local process group.
 *
 * - Started detached (its own process group, no pipes to us) so it outlives a coordinator crash;
 *   stdout/stderr go to `<dataDir>/replicas/<id>/output.log` (bounded, see replica-log.ts).
 * - `<dataDir>/replicas/<id>/state.json` records pid, port, start time and the /proc start ticks
 *   + boot id that tell a live replica from a reused pid. A new backend over the same dataDir
 *   adopts live replicas and reports dead ones through onExit.
 * - Deaths are noticed from the child's exit event when we spawned it, and by polling /proc
 *   (every 250 ms) for every replica, adopted ones included (they are not our children).
 * - Stop signals the whole process group, so a shell wrapper's children go with it; a replica
 *   that dies on its own has any remaining group members killed too. No orphans.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import {
  appendFileSync,
  closeSync,
  existsSync,
  promises as fsp,
  openSync,
  renameSync,
  statSync,
  writeFileSync,
  writeSync,
} from 'node:fs';
import path from 'node:path';
import { FlotillaError } from '../domain/errors.ts';
import { httpUrl } from '../domain/host.ts';
import type { ResourceSlots, SessionSpec } from '../domain/session.ts';
import {
  isValidReplicaId,
  REPLICA_ID_ENV,
  type ReplicaBackend,
  type ReplicaExit,
  type ReplicaHandle,
  type ReplicaStatus,
  type ReplicaUsage,
  substitutePort,
} from './backend.ts';
import { CapacityLedger, reservedSlots, resolveCapacity } from './capacity.ts';
import { ExitNotifier } from './exit-notifier.ts';
import { freePortAvoiding, isPortFree } from './free-port.ts';
import { KeyedQueue, stopAtClose } from './keyed-queue.ts';
import {
  bootId,
  envOf,
  groupMembers,
  groupsWithEnv,
  groupUsage,
  hasProcFs,
  isProcessAlive,
  type ProcUsage,
  readProcStat,
  signalGroup,
} from './proc.ts';
import {
  DEFAULT_LOG_CAP_BYTES,
  DEFAULT_TAIL_BYTES,
  LOG_FILE,
  readLogTail,
  trimLog,
} from './replica-log.ts';

export interface ProcessBackendOptions {
  /** Flotilla's data directory; replicas live under `<dataDir>/replicas/`. */
  dataDir: string;
  /** Node capacity; each missing slot defaults to the machine (all CPUs, all memory, gpu 0). */
  capacity?: Partial<ResourceSlots>;
  /** Interface replicas are reached on and free ports are picked on. Default `127.0.0.1`. */
  host?: string;
  /** Log file cap per replica before rotation. Default 1 MiB. */
  logCapBytes?: number;
  /** /proc poll interval for exit detection. Default 250 ms (deaths reported within 1 s). */
  pollIntervalMs?: number;
  /**
   * Environment replicas inherit before the spec's environ. Default: this process's
   * environment minus Flotilla's own settings and credentials (FLOTILLA_*, DATABASE_URL,
   * REDIS_URL, ETCD_ENDPOINTS).
   */
  baseEnv?: Record<string, string | undefined>;
  /** Records of replicas stopped longer ago than this are deleted at start. Default 24 h. */
  retainStoppedMs?: number;
}

/** On-disk record, `<dataDir>/replicas/<id>/state.json`. */
interface ReplicaRecord {
  version: 1;
  replicaId: string;
  pid: number;
  /** Equal to pid: the replica leads its own process group. */
  pgid: number;
  /** /proc start ticks; null where /proc is missing (no pid-reuse protection then). */
  startTicks: number | null;
  bootId: string | null;
  host: string;
  port: number;
  startedAt: number;
  command: string[];
  workdir: string | null;
  resources: ResourceSlots;
  /** Set when the replica was seen dead (on its own or stopped). */
  exitedAt?: number;
  exitCode?: number | null;
  exitSignal?: string | null;
  /** Set by stop(); a stopped replica is never reported through onExit. */
  stoppedAt?: number;
  /** Set when close({ stopReplicas: true }) stopped it: a planned stop, not a failure. */
  stoppedBy?: 'shutdown';
}

interface Tracked {
  record: ReplicaRecord;
  /** Present when this backend instance spawned the process. */
  child?: ChildProcess;
  state: 'running' | 'stopping' | 'exited';
  /** A poll saw our own child dead before its exit event; report on the next poll regardless. */
  deathSeen?: boolean;
}

const STATE_FILE = 'state.json';
const SECRET_ENV = /^(FLOTILLA_.*|DATABASE_URL|REDIS_URL|ETCD_ENDPOINTS)$/;
const STOP_POLL_MS = 50;
const KILL_WAIT_MS = 10_000;
/** One /proc scan answers every usage() call made within this long (a sampler's pass). */
const USAGE_SCAN_TTL_MS = 200;

function defaultBaseEnv(): Record<string, string | undefined> {
  const env: Record<string, string | undefined> = {};
  for (const [k, v] of Object.entries(process.env)) if (!SECRET_ENV.test(k)) env[k] = v;
  return env;
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

class ProcessBackend implements ReplicaBackend {
  readonly name = 'process' as const;
  private readonly replicasDir: string;
  private readonly host: string;
  private readonly ledger: CapacityLedger;
  private readonly logCapBytes: number;
  private readonly baseEnv: Record<string, string | undefined>;
  private readonly replicas = new Map<string, Tracked>();
  private readonly ops = new KeyedQueue();
  private readonly exits = new ExitNotifier();
  private timer: NodeJS.Timeout | undefined;
  private polls = 0;
  private trimming = false;
  private closed = false;
  private shuttingDown = false;
  private usageScan: { at: number; pgids: Set<number>; byPgid: Map<number, ProcUsage> } | undefined;

  constructor(private readonly opts: ProcessBackendOptions) {
    this.replicasDir = path.join(opts.dataDir, 'replicas');
    this.host = opts.host ?? '127.0.0.1';
    this.ledger = new CapacityLedger(resolveCapacity(opts.capacity));
    this.logCapBytes = opts.logCapBytes ?? DEFAULT_LOG_CAP_BYTES;
    this.baseEnv = opts.baseEnv ?? defaultBaseEnv();
  }

  /** Loads every record: adopts the live, reports the dead (to the first onExit listener). */
  async init(): Promise<void> {
    await fsp.mkdir(this.replicasDir, { recursive: true });
    const retain = this.opts.retainStoppedMs ?? 24 * 3600_000;
    for (const entry of await fsp.readdir(this.replicasDir)) {
      if (!isValidReplicaId(entry)) continue;
      const dir = path.join(this.replicasDir, entry);
      const record = await readRecord(dir);
      if (!record || record.replicaId !== entry) continue;
      if (record.stoppedAt !== undefined) {
        if (Date.now() - record.stoppedAt > retain) {
          await fsp.rm(dir, { recursive: true, force: true });
        } else {
          this.replicas.set(entry, { record, state: 'exited' });
        }
        continue;
      }
      const tracked: Tracked = { record, state: 'exited' };
      this.replicas.set(entry, tracked);
      if (this.recordAlive(record)) {
        tracked.state = 'running';
        this.ledger.adopt(entry, record.resources);
      } else {
        // Reported on every restart until the runtime stops or restarts it: at-least-once, so a
        // coordinator that crashed before handling the exit still hears of it.
        this.killLeftovers(record);
        record.exitedAt ??= Date.now();
        this.persist(record);
        this.emit({
          replicaId: entry,
          code: record.exitCode ?? null,
          signal: record.exitSignal ?? null,
          at: Date.now(),
        });
      }
    }
    this.timer = setInterval(() => this.poll(), this.opts.pollIntervalMs ?? 250);
    this.timer.unref();
  }

  start(replicaId: string, spec: SessionSpec): Promise<ReplicaHandle> {
    if (!isValidReplicaId(replicaId)) {
      return Promise.reject(
        new FlotillaError('validation', `invalid replica id "${replicaId}"`, {
          details: [{ path: 'replicaId', message: 'letters, digits, ".", "_", "-"; max 128' }],
        }),
      );
    }
    if (this.closed) return Promise.reject(closedError());
    return this.ops.run(replicaId, () => this.doStart(replicaId, spec));
  }

  private async doStart(replicaId: string, spec: SessionSpec): Promise<ReplicaHandle> {
    if (this.closed) throw closedError();
    const existing = this.replicas.get(replicaId);
    if (existing?.state === 'running') {
      if (this.recordAlive(existing.record)) return toHandle(existing.record);
      this.noticeDeath(existing, null, null);
    }
    if (spec.command.length === 0 || !spec.command[0]) {
      throw new FlotillaError('validation', `replica ${replicaId}: the session has no command`, {
        details: [{ path: 'command', message: 'must not be empty' }],
      });
    }
    if (spec.workdir && !isDirectory(spec.workdir)) {
      throw new FlotillaError(
        'validation',
        `replica ${replicaId}: working directory ${spec.workdir} does not exist`,
        { details: [{ path: 'workdir', message: 'not a directory' }] },
      );
    }
    this.ledger.reserve(replicaId, reservedSlots(spec));
    try {
      return await this.spawnReplica(replicaId, spec);
    } catch (err) {
      this.ledger.release(replicaId);
      throw err;
    }
  }

  /**
   * A replica whose directory exists but that has no record was being spawned when the
   * previous process died (the record is written right after spawn): its process may live on
   * with nobody owning it. Found by its FLOTILLA_REPLICA_ID: a single live group is adopted
   * (recorded now, on the PORT it was given), so the replica is started once; anything else
   * is stopped, so it never runs twice.
   */
  private adoptOrKillUnrecorded(
    replicaId: string,
    dir: string,
    spec: SessionSpec,
  ): ReplicaRecord | undefined {
    const groups = groupsWithEnv(REPLICA_ID_ENV, replicaId);
    const only = groups.length === 1 ? groups[0]! : undefined;
    const port = only === undefined ? undefined : Number(envOf(only, 'PORT'));
    const stat = only === undefined ? null : readProcStat(only);
    if (
      only !== undefined &&
      stat &&
      port !== undefined &&
      Number.isInteger(port) &&
      port > 0 &&
      !this.portsInUse().has(port)
    ) {
      const argv = substitutePort(spec.command, port);
      const record: ReplicaRecord = {
        version: 1,
        replicaId,
        pid: only,
        pgid: only,
        startTicks: stat.startTicks,
        bootId: bootId(),
        host: this.host,
        port,
        startedAt: Date.now(),
        command: argv,
        workdir: spec.workdir ?? null,
        resources: reservedSlots(spec),
      };
      this.persist(record);
      this.replicas.set(replicaId, { record, state: 'running' });
      appendFileSync(
        path.join(dir, LOG_FILE),
        `[flotilla] ${new Date().toISOString()} adopted process group ${only} of replica ${replicaId} on port ${port}: spawned before a crash, never recorded\n`,
      );
      return record;
    }
    for (const pgid of groups) {
      signalGroup(pgid, 'SIGKILL');
      appendFileSync(
        path.join(dir, LOG_FILE),
        `[flotilla] ${new Date().toISOString()} stopped process group ${pgid} of replica ${replicaId}: spawned before a crash, never recorded\n`,
      );
    }
  }

  private async spawnReplica(replicaId: string, spec: SessionSpec): Promise<ReplicaHandle> {
    // A replica a clean shutdown stopped comes back on its port, so its endpoint stays.
    const previous = this.replicas.get(replicaId)?.record;
    const port =
      previous?.stoppedBy === 'shutdown' &&
      !this.portsInUse().has(previous.port) &&
      (await isPortFree(this.host, previous.port))
        ? previous.port
        : await freePortAvoiding(this.host, this.portsInUse());
    const dir = path.join(this.replicasDir, replicaId);
    if (!previous && existsSync(dir)) {
      const adopted = this.adoptOrKillUnrecorded(replicaId, dir, spec);
      if (adopted) return toHandle(adopted);
    }
    await fsp.mkdir(dir, { recursive: true });
    const argv = substitutePort(spec.command, port);
    const env: Record<string, string | undefined> = {
      ...this.baseEnv,
      ...spec.environ,
      PORT: String(port),
      [REPLICA_ID_ENV]: replicaId,
    };
    const logFd = openSync(path.join(dir, LOG_FILE), 'a');
    let child: ChildProcess;
    try {
      child = spawn(argv[0]!, argv.slice(1), {
        cwd: spec.workdir || undefined,
        env,
        detached: true,
        stdio: ['ignore', logFd, logFd],
      });
      // Written once a process exists, so each line is one start: a crash before the spawn
      // leaves no line, one right after it leaves a process the next start adopts.
      if (child.pid !== undefined) {
        writeSync(
          logFd,
          `[flotilla] ${new Date().toISOString()} starting replica ${replicaId} on port ${port}: ${JSON.stringify(argv)}${spec.workdir ? ` in ${spec.workdir}` : ''}\n`,
        );
      }
    } finally {
      closeSync(logFd);
    }
    const startedAt = Date.now();
    if (child.pid === undefined) {
      const err = await new Promise<Error>((resolve) => child.once('error', resolve));
      throw new FlotillaError(
        'validation',
        `replica ${replicaId}: cannot run ${JSON.stringify(argv[0])}: ${err.message}`,
        { cause: err, details: [{ path: 'command', message: err.message }] },
      );
    }
    const pid = child.pid;
    // Recorded synchronously, before anything can interrupt us, so a crash right now leaves no
    // replica without a record (which would be an orphan nobody adopts).
    const stat = readProcStat(pid);
    const record: ReplicaRecord = {
      version: 1,
      replicaId,
      pid,
      pgid: pid,
      startTicks: hasProcFs() ? (stat?.startTicks ?? -1) : null,
      bootId: bootId(),
      host: this.host,
      port,
      startedAt,
      command: argv,
      workdir: spec.workdir ?? null,
      resources: reservedSlots(spec),
    };
    this.persist(record);
    const tracked: Tracked = { record, child, state: 'running' };
    this.replicas.set(replicaId, tracked);
    child.once('exit', (code, signal) => {
      // After close() the replica belongs to whichever backend adopts it next.
      if (this.closed) return;
      const t = this.replicas.get(replicaId);
      if (t === tracked && t.state === 'running') this.noticeDeath(t, code, signal);
    });
    child.on('error', () => {
      // Errors after a successful spawn (a failed kill) are covered by the exit watch.
    });
    child.unref();
    return toHandle(record);
  }

  stop(replicaId: string, graceMs: number): Promise<void> {
    // Unknown and not being started: nothing to stop.
    if (!this.replicas.has(replicaId) && !this.ops.has(replicaId)) return Promise.resolve();
    return this.ops.run(replicaId, () => this.doStop(replicaId, graceMs));
  }

  private async doStop(replicaId: string, graceMs: number): Promise<void> {
    const t = this.replicas.get(replicaId);
    if (!t) return;
    const { record } = t;
    if (t.state === 'running') {
      t.state = 'stopping';
      const started = Date.now();
      if (this.groupIsOurs(record) && groupMembers(record.pgid).length > 0) {
        signalGroup(record.pgid, 'SIGTERM');
        const termDeadline = started + Math.max(0, graceMs);
        while (groupMembers(record.pgid).length > 0 && Date.now() < termDeadline) {
          await sleep(STOP_POLL_MS);
        }
        if (groupMembers(record.pgid).length > 0) {
          signalGroup(record.pgid, 'SIGKILL');
          const killDeadline = Date.now() + KILL_WAIT_MS;
          while (groupMembers(record.pgid).length > 0) {
            if (Date.now() > killDeadline) {
              throw new FlotillaError(
                'internal',
                `replica ${replicaId}: process group ${record.pgid} survived SIGKILL for ${KILL_WAIT_MS} ms`,
                { retryable: true },
              );
            }
            await sleep(STOP_POLL_MS);
          }
        }
      }
      record.exitCode = t.child?.exitCode ?? null;
      record.exitSignal = t.child?.signalCode ?? null;
    } else {
      this.killLeftovers(record);
    }
    t.state = 'exited';
    record.exitedAt ??= Date.now();
    record.stoppedAt = Date.now();
    if (this.shuttingDown) record.stoppedBy = 'shutdown';
    this.ledger.release(replicaId);
    this.persist(record);
  }

  async status(replicaId: string): Promise<ReplicaStatus> {
    const t = this.replicas.get(replicaId);
    if (!t) return 'unknown';
    if (t.state === 'running' && !this.recordAlive(t.record)) this.noticeDeath(t, null, null);
    return t.state === 'exited' ? 'exited' : 'running';
  }

  async list(): Promise<ReplicaHandle[]> {
    const handles: ReplicaHandle[] = [];
    for (const t of this.replicas.values()) {
      if (t.state === 'running' && this.recordAlive(t.record)) handles.push(toHandle(t.record));
    }
    return handles;
  }

  async usage(replicaId: string): Promise<ReplicaUsage | null> {
    const t = this.replicas.get(replicaId);
    if (t?.state !== 'running' || !hasProcFs()) return null;
    const { record } = t;
    if (!this.recordAlive(record) || !this.groupIsOurs(record)) return null;
    const now = Date.now();
    let scan = this.usageScan;
    if (!scan || now - scan.at > USAGE_SCAN_TTL_MS || !scan.pgids.has(record.pgid)) {
      // Every running replica's group in one pass over /proc.
      const pgids = new Set<number>([record.pgid]);
      for (const other of this.replicas.values()) {
        if (other.state === 'running') pgids.add(other.record.pgid);
      }
      scan = { at: now, pgids, byPgid: groupUsage(pgids) };
      this.usageScan = scan;
    }
    const used = scan.byPgid.get(record.pgid);
    if (!used) return null;
    return { cpuSeconds: used.cpuSeconds, rssBytes: used.rssBytes, requested: record.resources };
  }

  async logs(replicaId: string, opts?: { tailBytes?: number }): Promise<string> {
    if (!isValidReplicaId(replicaId)) return '';
    return readLogTail(
      path.join(this.replicasDir, replicaId),
      Math.max(0, opts?.tailBytes ?? DEFAULT_TAIL_BYTES),
    );
  }

  onExit(listener: (exit: ReplicaExit) => void): () => void {
    return this.exits.subscribe(listener);
  }

  forget(replicaId: string): Promise<void> {
    return this.ops.run(replicaId, async () => {
      if (this.replicas.get(replicaId)?.state !== 'exited') return;
      this.replicas.delete(replicaId);
      await fsp.rm(path.join(this.replicasDir, replicaId), { recursive: true, force: true });
    });
  }

  async stoppedAtShutdown(replicaId: string): Promise<boolean> {
    const t = this.replicas.get(replicaId);
    return t?.state === 'exited' && t.record.stoppedBy === 'shutdown';
  }

  capacity(): { total: ResourceSlots; used: ResourceSlots } {
    return this.ledger.snapshot();
  }

  async close(opts: { stopReplicas: boolean; graceMs?: number }): Promise<void> {
    if (this.closed) return;
    if (opts.stopReplicas) this.shuttingDown = true;
    await stopAtClose(opts, this.ops, this.replicas, (id, grace) => this.stop(id, grace));
    this.closed = true;
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    this.exits.clear();
  }

  // --- internals -------------------------------------------------------------------------------

  private recordAlive(record: ReplicaRecord): boolean {
    if (record.bootId !== null && record.bootId !== bootId()) return false;
    return isProcessAlive(record.pid, record.startTicks);
  }

  /**
   * Whether signalling the recorded group id can reach only our replica's processes. Linux does
   * not hand out a pid while it is still some group's id, so: if the leader pid now belongs to
   * another process (other start time), our group has no member left and the id may be someone
   * else's; if the pid is free or still ours (possibly a zombie), the group is ours. After a
   * reboot nothing is ours.
   */
  private groupIsOurs(record: ReplicaRecord): boolean {
    if (record.bootId !== null && record.bootId !== bootId()) return false;
    if (record.startTicks === null) return true;
    const stat = readProcStat(record.pid);
    return stat === null || stat.startTicks === record.startTicks;
  }

  /** A replica is dead; make sure nothing of its process group survives it. */
  private killLeftovers(record: ReplicaRecord): void {
    if (!this.groupIsOurs(record)) return;
    if (groupMembers(record.pgid).length > 0) signalGroup(record.pgid, 'SIGKILL');
  }

  private noticeDeath(t: Tracked, code: number | null, signal: string | null): void {
    if (t.state !== 'running') return;
    t.state = 'exited';
    const { record } = t;
    this.killLeftovers(record);
    record.exitedAt = Date.now();
    record.exitCode = code;
    record.exitSignal = signal;
    this.ledger.release(record.replicaId);
    this.persist(record);
    this.emit({ replicaId: record.replicaId, code, signal, at: record.exitedAt });
  }

  private emit(exit: ReplicaExit): void {
    if (!this.closed) this.exits.emit(exit);
  }

  private poll(): void {
    this.polls++;
    for (const t of this.replicas.values()) {
      if (t.state !== 'running' || this.recordAlive(t.record)) continue;
      const child = t.child;
      if (child && child.exitCode === null && child.signalCode === null && !t.deathSeen) {
        // Our own child: its exit event (with code and signal) is about to arrive.
        t.deathSeen = true;
        continue;
      }
      this.noticeDeath(t, child?.exitCode ?? null, child?.signalCode ?? null);
    }
    if (this.polls % 4 === 0 && !this.trimming) {
      this.trimming = true;
      void this.trimLogs().finally(() => {
        this.trimming = false;
      });
    }
  }

  private async trimLogs(): Promise<void> {
    for (const [id, t] of this.replicas) {
      if (t.state === 'exited') continue;
      try {
        await trimLog(path.join(this.replicasDir, id), this.logCapBytes);
      } catch {
        // The replica's directory vanished or the disk is full: nothing to trim then.
      }
    }
  }

  private portsInUse(): Set<number> {
    const ports = new Set<number>();
    for (const t of this.replicas.values()) if (t.state !== 'exited') ports.add(t.record.port);
    return ports;
  }

  private persist(record: ReplicaRecord): void {
    const dir = path.join(this.replicasDir, record.replicaId);
    const file = path.join(dir, STATE_FILE);
    const tmp = `${file}.${process.pid}.tmp`;
    try {
      writeFileSync(tmp, `${JSON.stringify(record, null, 2)}\n`);
      renameSync(tmp, file);
    } catch (err) {
      if (!existsSync(dir)) return; // removed underneath us (tests clearing their data dir)
      throw err;
    }
  }
}

async function readRecord(dir: string): Promise<ReplicaRecord | null> {
  try {
    const parsed = JSON.parse(await fsp.readFile(path.join(dir, STATE_FILE), 'utf8'));
    if (parsed?.version !== 1 || !Number.isInteger(parsed.pid)) return null;
    return parsed as ReplicaRecord;
  } catch {
    return null;
  }
}

function isDirectory(p: string): boolean {
  try {
    return statSync(p).isDirectory();
  } catch {
    return false;
  }
}

function toHandle(record: ReplicaRecord): ReplicaHandle {
  return {
    replicaId: record.replicaId,
    pid: record.pid,
    host: record.host,
    port: record.port,
    url: httpUrl(record.host, record.port),
    startedAt: record.startedAt,
  };
}

function closedError(): FlotillaError {
  return new FlotillaError('invalid_state', 'the process backend is closed');
}

/**
 * Creates the process backend over `<dataDir>/replicas/`, adopting live replicas recorded there
 * and queueing onExit reports for dead ones.
 */
export async function createProcessBackend(opts: ProcessBackendOptions): Promise<ReplicaBackend> {
  const backend = new ProcessBackend(opts);
  await backend.init();
  return backend;
}
