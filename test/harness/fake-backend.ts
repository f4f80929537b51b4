/**
 * An in-process ReplicaBackend for runtime and crash tests. It passes the same conformance
 * suite as the real backends (test/integration/backends/backend-conformance.test.ts):
 * one live session per replica id (concurrent starts share one), idempotent stop, capacity
 * accounting through the backends' CapacityLedger, onExit reports kept until the first listener,
 * and adoption by a new instance.
 *
 * What outlives a backend instance (as real replicas outlive a crashed coordinator) is the
 * `FakeMachine` the sessions run on: a new FakeBackend over the same machine adopts the live
 * sessions and reports the ones that died meanwhile. With a log file, the live set also survives
 * the process hosting it (crash tests): a new instance reloads it from the log and adopts.
 *
 * By default a session runs nothing (cheap enough for benchmarks with 40,000 replicas). With
 * `serve: true` each session is an in-process echo server listening where the launched command
 * would: the value of `--port` in the command after `{port}` substitution, else the `PORT`
 * environment variable; so the handle's URL answers only when the spec gets the port contract
 * right, as with a real backend.
 *
 * A closed FakeBackend that is used again acts as a new instance over the same machine (runtime
 * tests hand one object to the runtime before and after a simulated restart).
 */
import { appendFileSync, existsSync, readFileSync } from 'node:fs';
import {
  isValidReplicaId,
  REPLICA_ID_ENV,
  type ReplicaBackend,
  type ReplicaExit,
  type ReplicaHandle,
  type ReplicaStatus,
  type ReplicaUsage,
  substitutePort,
} from '../../src/backends/backend.ts';
import { CapacityLedger } from '../../src/backends/capacity.ts';
import { ExitNotifier } from '../../src/backends/exit-notifier.ts';
import { freePortAvoiding } from '../../src/backends/free-port.ts';
import { KeyedQueue } from '../../src/backends/keyed-queue.ts';
import { FlotillaError } from '../../src/domain/errors.ts';
import { httpUrl } from '../../src/domain/host.ts';
import type { ResourceSlots, SessionSpec } from '../../src/domain/session.ts';
import { type EchoServer, startEchoServer } from '../../src/echo/server.ts';

export interface BackendEvent {
  op: 'start' | 'adopt' | 'stop' | 'died';
  replicaId: string;
  at: number;
  pid: number;
}

interface FakeSession {
  handle: ReplicaHandle;
  resources: ResourceSlots;
  state: 'running' | 'dead' | 'stopped';
  exit?: ReplicaExit;
  server?: EchoServer;
  /** Simulated resource use (see FakeMachine.setUsage and the echo server's burn). */
  usage: FakeUsage;
}

/** A session's simulated use: CPU seconds accrue while it "burns" (no CPU is spent). */
interface FakeUsage {
  cpuSeconds: number;
  rssBytes: number;
  /** Cores burning since `since` (epoch ms) until `until`. */
  burn?: { cores: number; since: number; until: number };
}

/** What a fake session "uses" when nothing set it: no CPU, 32 MiB resident. */
export const FAKE_IDLE_RSS_BYTES = 32 * 1024 * 1024;

function newUsage(): FakeUsage {
  return { cpuSeconds: 0, rssBytes: FAKE_IDLE_RSS_BYTES };
}

/** CPU seconds at `now`, the current burn accounted up to now. */
function cpuSecondsAt(u: FakeUsage, now: number): number {
  if (!u.burn) return u.cpuSeconds;
  const burnt = Math.max(0, Math.min(now, u.burn.until) - u.burn.since) / 1000;
  return u.cpuSeconds + burnt * u.burn.cores;
}

/** The sessions "running on the machine": shared by every FakeBackend built over it. */
export class FakeMachine {
  readonly sessions = new Map<string, FakeSession>();
  /** Backends watching for deaths (open ones). */
  readonly watchers = new Set<FakeBackend>();
  nextPort = 20_000;
  private lastStartedAt = 0;

  /** Strictly increasing, so two sessions of one replica id never share a startedAt. */
  startedAt(): number {
    this.lastStartedAt = Math.max(Date.now(), this.lastStartedAt + 1);
    return this.lastStartedAt;
  }

  /**
   * A running session dies on its own (kill -9, a crash); every open backend on the machine
   * hears of it, and one opened later does too. False when it was not running.
   */
  die(replicaId: string, code: number | null, signal: string | null): boolean {
    const session = this.sessions.get(replicaId);
    if (session?.state !== 'running') return false;
    session.state = 'dead';
    session.exit = { replicaId, code, signal, at: Date.now() };
    void session.server?.close();
    for (const watcher of this.watchers) watcher.noticeDeath(session.exit);
    return true;
  }

  /**
   * Sets a running session's simulated use: `cpuSeconds` adds CPU time (as if spent just now),
   * `rssBytes` replaces its resident memory. False when it is not running.
   */
  setUsage(replicaId: string, change: { addCpuSeconds?: number; rssBytes?: number }): boolean {
    const session = this.sessions.get(replicaId);
    if (session?.state !== 'running') return false;
    session.usage.cpuSeconds += change.addCpuSeconds ?? 0;
    if (change.rssBytes !== undefined) session.usage.rssBytes = change.rssBytes;
    return true;
  }

  /** `POST /admin/burn` of a serving session: CPU time accrues at `cores` per second. */
  burn(replicaId: string, seconds: number, cores: number): void {
    const session = this.sessions.get(replicaId);
    if (!session) return;
    const now = Date.now();
    const u = session.usage;
    u.cpuSeconds = cpuSecondsAt(u, now);
    delete u.burn;
    if (seconds > 0) u.burn = { cores, since: now, until: now + seconds * 1000 };
  }

  /** A running session's use now; null otherwise. */
  usageOf(replicaId: string): ReplicaUsage | null {
    const session = this.sessions.get(replicaId);
    if (session?.state !== 'running') return null;
    return {
      cpuSeconds: cpuSecondsAt(session.usage, Date.now()),
      rssBytes: session.usage.rssBytes,
      requested: { ...session.resources },
    };
  }

  /** Sessions of `replicaId` running now (0 or 1). */
  running(replicaId: string): number {
    return this.sessions.get(replicaId)?.state === 'running' ? 1 : 0;
  }
}

const HOST = '127.0.0.1';
/** Unbounded unless a capacity is given: benchmarks run tens of thousands of sessions. */
const UNBOUNDED: ResourceSlots = { cpu: Infinity, mem: Infinity, gpu: Infinity };

export class FakeBackend implements ReplicaBackend {
  readonly name = 'process' as const;
  readonly events: BackendEvent[] = [];
  readonly machine: FakeMachine;
  private readonly ledger: CapacityLedger;
  private readonly exits = new ExitNotifier();
  private readonly ops = new KeyedQueue();
  private closed = false;

  constructor(
    private readonly opts: {
      logFile?: string;
      capacity?: Partial<ResourceSlots>;
      startDelayMs?: number;
      /** Sessions are in-process echo servers that answer at the handle's URL. */
      serve?: boolean;
      /** Sessions outlive this instance on the machine; a new instance adopts them. */
      machine?: FakeMachine;
    } = {},
  ) {
    this.machine = opts.machine ?? new FakeMachine();
    this.ledger = new CapacityLedger({ ...UNBOUNDED, ...opts.capacity });
    if (opts.logFile && existsSync(opts.logFile)) {
      for (const e of readEvents(opts.logFile)) {
        if (e.op === 'start') {
          const port = this.machine.nextPort++;
          this.machine.sessions.set(e.replicaId, {
            handle: handle(e.replicaId, port, e.at),
            resources: { cpu: 0, mem: 0, gpu: 0 },
            state: 'running',
            usage: newUsage(),
          });
        }
        if (e.op === 'stop' || e.op === 'died') this.machine.sessions.delete(e.replicaId);
      }
    }
    this.attach();
  }

  /** Sessions running now, by replica id. */
  get live(): Map<string, ReplicaHandle> {
    const live = new Map<string, ReplicaHandle>();
    for (const [id, s] of this.machine.sessions) if (s.state === 'running') live.set(id, s.handle);
    return live;
  }

  /** Watches the machine: adopts what runs, reports what died and was not stopped. */
  private attach(): void {
    this.closed = false;
    this.machine.watchers.add(this);
    for (const [id, s] of this.machine.sessions) {
      if (s.state === 'running') this.ledger.adopt(id, s.resources);
      else this.ledger.release(id);
      if (s.state === 'dead' && s.exit) this.exits.emit({ ...s.exit, at: Date.now() });
    }
  }

  private reopenIfClosed(): void {
    if (this.closed) this.attach();
  }

  private log(op: BackendEvent['op'], replicaId: string): void {
    const e = { op, replicaId, at: Date.now(), pid: process.pid };
    this.events.push(e);
    if (this.opts.logFile) appendFileSync(this.opts.logFile, `${JSON.stringify(e)}\n`);
  }

  start(replicaId: string, spec: SessionSpec): Promise<ReplicaHandle> {
    if (!isValidReplicaId(replicaId)) {
      return Promise.reject(new FlotillaError('validation', `invalid replica id "${replicaId}"`));
    }
    this.reopenIfClosed();
    return this.ops.run(replicaId, () => this.doStart(replicaId, spec));
  }

  private async doStart(replicaId: string, spec: SessionSpec): Promise<ReplicaHandle> {
    const existing = this.machine.sessions.get(replicaId);
    if (existing?.state === 'running') {
      this.ledger.adopt(replicaId, existing.resources);
      this.log('adopt', replicaId);
      return existing.handle;
    }
    this.ledger.reserve(replicaId, spec.resources);
    try {
      if (this.opts.startDelayMs) await new Promise((r) => setTimeout(r, this.opts.startDelayMs));
      const session = await this.launch(replicaId, spec);
      this.machine.sessions.set(replicaId, session);
      this.log('start', replicaId);
      return session.handle;
    } catch (err) {
      this.ledger.release(replicaId);
      throw err;
    }
  }

  private async launch(replicaId: string, spec: SessionSpec): Promise<FakeSession> {
    const resources = { ...spec.resources };
    if (!this.opts.serve) {
      const port = this.machine.nextPort++;
      return {
        handle: handle(replicaId, port, this.machine.startedAt()),
        resources,
        state: 'running',
        usage: newUsage(),
      };
    }
    const inUse = new Set<number>();
    for (const s of this.machine.sessions.values()) {
      if (s.state === 'running') inUse.add(s.handle.port);
    }
    const port = await freePortAvoiding(HOST, inUse);
    const argv = substitutePort(spec.command, port);
    const env = { ...spec.environ, PORT: String(port), [REPLICA_ID_ENV]: replicaId };
    const listenOn = listenPortOf(argv, env);
    // A command that would not listen on its port runs, but nothing answers at the URL.
    const server =
      listenOn === undefined
        ? undefined
        : await startEchoServer({
            port: listenOn,
            host: HOST,
            startupDelayMs: 0,
            tokenLatencyMs: 0,
            model: 'fake',
            replicaId,
            // POST /admin/crash ends the session as a crashing process would (status 1).
            onCrash: () => this.die(replicaId, 1, null),
            // POST /admin/burn accrues simulated CPU time instead of spending it.
            onBurn: (seconds, cores) => this.machine.burn(replicaId, seconds, cores),
          });
    const session: FakeSession = {
      handle: handle(replicaId, port, this.machine.startedAt()),
      resources,
      state: 'running',
      usage: newUsage(),
    };
    if (server) session.server = server;
    return session;
  }

  stop(replicaId: string): Promise<void> {
    return this.ops.run(replicaId, async () => {
      const session = this.machine.sessions.get(replicaId);
      if (!session || session.state === 'stopped') return;
      const wasRunning = session.state === 'running';
      session.state = 'stopped';
      delete session.exit;
      await session.server?.close();
      this.ledger.release(replicaId);
      if (wasRunning) this.log('stop', replicaId);
    });
  }

  /** Simulates a session dying on its own (kill -9 from outside). */
  kill(replicaId: string): void {
    this.die(replicaId, 137, 'SIGKILL');
  }

  private die(replicaId: string, code: number | null, signal: string | null): void {
    if (this.machine.die(replicaId, code, signal)) this.log('died', replicaId);
  }

  /** Called by the machine when a session died on its own. */
  noticeDeath(exit: ReplicaExit): void {
    this.ledger.release(exit.replicaId);
    this.exits.emit(exit);
  }

  async status(replicaId: string): Promise<ReplicaStatus> {
    const session = this.machine.sessions.get(replicaId);
    if (!session) return 'unknown';
    return session.state === 'running' ? 'running' : 'exited';
  }

  async list(): Promise<ReplicaHandle[]> {
    return [...this.live.values()];
  }

  async usage(replicaId: string): Promise<ReplicaUsage | null> {
    return this.machine.usageOf(replicaId);
  }

  async logs(): Promise<string> {
    return '';
  }

  onExit(listener: (e: ReplicaExit) => void): () => void {
    this.reopenIfClosed();
    return this.exits.subscribe(listener);
  }

  capacity() {
    return this.ledger.snapshot();
  }

  async close(opts: { stopReplicas: boolean }): Promise<void> {
    if (this.closed) return;
    if (opts.stopReplicas) {
      await Promise.all([...this.live.keys()].map((id) => this.stop(id)));
    }
    this.closed = true;
    this.machine.watchers.delete(this);
    this.exits.clear();
  }
}

/** Where a launched command listens: its `--port N` / `--port=N`, else `PORT`. */
function listenPortOf(argv: string[], env: Record<string, string>): number | undefined {
  let value: string | undefined;
  argv.forEach((arg, i) => {
    if (arg === '--port') value = argv[i + 1];
    else if (arg.startsWith('--port=')) value = arg.slice('--port='.length);
  });
  const port = Number(value ?? env.PORT);
  return Number.isInteger(port) && port > 0 && port < 65536 ? port : undefined;
}

function handle(replicaId: string, port: number, startedAt: number): ReplicaHandle {
  return { replicaId, host: HOST, port, url: httpUrl(HOST, port), startedAt };
}

export function readEvents(file: string): BackendEvent[] {
  if (!existsSync(file)) return [];
  return readFileSync(file, 'utf8')
    .split('\n')
    .filter((l) => l.trim())
    .flatMap((l) => {
      try {
        return [JSON.parse(l) as BackendEvent];
      } catch {
        return []; // a line torn by kill -9
      }
    });
}

/** Replays a log: the ids that ever had two live sessions at once (must be empty). */
export function doubleStarts(events: BackendEvent[]): string[] {
  const live = new Set<string>();
  const bad = new Set<string>();
  for (const e of events) {
    if (e.op === 'start') {
      if (live.has(e.replicaId)) bad.add(e.replicaId);
      live.add(e.replicaId);
    }
    if (e.op === 'stop' || e.op === 'died') live.delete(e.replicaId);
  }
  return [...bad];
}

export function liveFromEvents(events: BackendEvent[]): Set<string> {
  const live = new Set<string>();
  for (const e of events) {
    if (e.op === 'start') live.add(e.replicaId);
    if (e.op === 'stop' || e.op === 'died') live.delete(e.replicaId);
  }
  return live;
}
