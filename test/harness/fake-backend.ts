/**
 * An in-process ReplicaBackend for runtime and crash tests: it runs no processes but keeps the
 * one thing a real backend must guarantee, one live session per replica id, and records every
 * start and stop. With a log file, the live set survives the process that hosts it (like real
 * replicas outlive a crashed coordinator): a new instance reloads it and adopts.
 */
import { appendFileSync, existsSync, readFileSync } from 'node:fs';
import type { ReplicaBackend, ReplicaExit, ReplicaHandle } from '../../src/backends/backend.ts';
import { FlotillaError } from '../../src/domain/errors.ts';
import type { ResourceSlots, SessionSpec } from '../../src/domain/session.ts';

export interface BackendEvent {
  op: 'start' | 'adopt' | 'stop' | 'died';
  replicaId: string;
  at: number;
  pid: number;
}

export class FakeBackend implements ReplicaBackend {
  readonly name = 'process' as const;
  readonly live = new Map<string, ReplicaHandle>();
  readonly events: BackendEvent[] = [];
  private readonly listeners = new Set<(e: ReplicaExit) => void>();
  private nextPort = 20_000;

  constructor(
    private readonly opts: {
      logFile?: string;
      capacity?: ResourceSlots;
      startDelayMs?: number;
    } = {},
  ) {
    if (opts.logFile && existsSync(opts.logFile)) {
      for (const e of readEvents(opts.logFile)) {
        if (e.op === 'start') this.live.set(e.replicaId, handle(e.replicaId, this.nextPort++));
        if (e.op === 'stop' || e.op === 'died') this.live.delete(e.replicaId);
      }
    }
  }

  private log(op: BackendEvent['op'], replicaId: string): void {
    const e = { op, replicaId, at: Date.now(), pid: process.pid };
    this.events.push(e);
    if (this.opts.logFile) appendFileSync(this.opts.logFile, `${JSON.stringify(e)}\n`);
  }

  async start(replicaId: string, spec: SessionSpec): Promise<ReplicaHandle> {
    const existing = this.live.get(replicaId);
    if (existing) {
      this.log('adopt', replicaId);
      return existing;
    }
    const cap = this.opts.capacity;
    if (cap && spec.resources.gpu > cap.gpu) {
      throw new FlotillaError(
        'insufficient_resources',
        `insufficient gpu: requested ${spec.resources.gpu}, free ${cap.gpu}`,
      );
    }
    if (this.opts.startDelayMs) await new Promise((r) => setTimeout(r, this.opts.startDelayMs));
    if (this.live.has(replicaId)) return this.live.get(replicaId)!;
    const h = handle(replicaId, this.nextPort++);
    this.live.set(replicaId, h);
    this.log('start', replicaId);
    return h;
  }

  async stop(replicaId: string): Promise<void> {
    if (!this.live.has(replicaId)) return;
    this.live.delete(replicaId);
    this.log('stop', replicaId);
  }

  /** Simulates a session dying on its own. */
  kill(replicaId: string): void {
    if (!this.live.delete(replicaId)) return;
    this.log('died', replicaId);
    for (const l of this.listeners) l({ replicaId, code: 137, signal: 'SIGKILL', at: Date.now() });
  }

  async status(replicaId: string) {
    return this.live.has(replicaId) ? ('running' as const) : ('unknown' as const);
  }

  async list(): Promise<ReplicaHandle[]> {
    return [...this.live.values()];
  }

  async logs(): Promise<string> {
    return '';
  }

  onExit(listener: (e: ReplicaExit) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  capacity() {
    const total = this.opts.capacity ?? { cpu: 64, mem: 2 ** 40, gpu: 8 };
    return { total, used: { cpu: 0, mem: 0, gpu: 0 } };
  }

  async close(opts: { stopReplicas: boolean }): Promise<void> {
    if (opts.stopReplicas) for (const id of [...this.live.keys()]) await this.stop(id);
    this.listeners.clear();
  }
}

function handle(replicaId: string, port: number): ReplicaHandle {
  return {
    replicaId,
    host: '127.0.0.1',
    port,
    url: `http://127.0.0.1:${port}`,
    startedAt: Date.now(),
  };
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
