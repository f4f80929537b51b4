/**
 * Durable transitions: the machines' `recordTransition` / `recordChange` actions land here.
 *
 * Each transition is queued with its actor and marks its deployment dirty. A flush (a few ms
 * later, or at once when a barrier is waited on) takes every dirty deployment's persisted
 * subtree snapshot, builds one write per queued transition (snapshot + history row) and
 * persists them all with one `store.writeActors` call: one transaction, a few round trips,
 * one actor's writes in order. Flushes never overlap, so order holds across batches too.
 *
 * Effects wait on `barrier()` before they report completion, so a transition is durable
 * before the effect it started counts as done.
 *
 * A batch whose write failed is sent again exactly as it was (same versions, same content)
 * before anything newer: its first attempt may have committed with only the answer lost (a
 * client-side query timeout on a starved PostgreSQL), and the store takes an identical write
 * it already holds as done (`Store.writeActors`). Merging the failed writes into a newer batch
 * instead made such a retry a version conflict that dropped every write in it, history rows of
 * later transitions included (a replica HEALTHY with no STARTING → HEALTHY row).
 */
import { deploymentActorId } from '../../machines/deployment.ts';
import type { ActorKind, ActorWrite, Store } from '../store/store.ts';
import { type Clock, systemClock } from './system-clock.ts';

export interface TransitionNote {
  actorId: string;
  kind: ActorKind;
  deploymentId: string;
  /** Filled in by `record` from the last state it saw for the actor. */
  from?: string | null;
  to: string;
  event: string;
  reason: string | null;
  at: Date;
  /** Projection fields for replicas/routes, read from the actor's context at the transition. */
  replica?: ActorWrite['replica'];
  route?: ActorWrite['route'];
}

export interface SubtreeSource {
  /** The deployment actor's persisted snapshot (with children), or undefined when it is gone. */
  persisted(deploymentId: string): PersistedSubtree | undefined;
}

export interface PersistedSubtree {
  value: unknown;
  children: Record<string, { snapshot: { value: unknown } & Record<string, unknown> }>;
  [k: string]: unknown;
}

export interface SnapshotWriterStats {
  flushes: number;
  writes: number;
  lastFlushMs: number;
  conflicts: number;
}

const RETRY_AFTER_MS = 1_000;

export function topState(value: unknown): string {
  if (typeof value === 'string') return value;
  if (value && typeof value === 'object') return Object.keys(value)[0] ?? 'UNKNOWN';
  return 'UNKNOWN';
}

export class SnapshotWriter {
  private readonly versions = new Map<string, number>();
  private readonly lastState = new Map<string, string>();
  private pending: TransitionNote[] = [];
  /** The last batch whose write failed: maybe committed, maybe not; sent again as it is. */
  private unconfirmed: ActorWrite[] | null = null;
  private readonly dirty = new Set<string>();
  private timer: unknown = null;
  private flushing: Promise<void> | null = null;
  private waiters: Array<{ resolve: () => void; reject: (e: unknown) => void }> = [];
  private failure: unknown = null;
  readonly stats: SnapshotWriterStats = { flushes: 0, writes: 0, lastFlushMs: 0, conflicts: 0 };

  constructor(
    private readonly store: Store,
    private readonly source: SubtreeSource,
    private readonly opts: {
      flushDelayMs?: number;
      onFlush?: (ms: number, writes: number) => void;
      onConflict?: (actorIds: string[]) => void;
      onError?: (err: unknown) => void;
      /**
       * Schedules the flushes and the retry after a failed one. Default the system clock;
       * tests pass a manual one (e.g. XState's `SimulatedClock`) to move time themselves.
       */
      clock?: Clock;
    } = {},
  ) {
    this.clock = opts.clock ?? systemClock;
  }

  private readonly clock: Clock;

  /** Seeds versions and states from restored rows, so the next writes pass the version check. */
  seed(rows: ReadonlyArray<{ actor_id: string; version: number; state: string }>): void {
    for (const r of rows) {
      this.versions.set(r.actor_id, r.version);
      this.lastState.set(r.actor_id, r.state);
    }
  }

  lastKnownState(actorId: string): string | undefined {
    return this.lastState.get(actorId);
  }

  record(note: TransitionNote): void {
    note.from = this.lastState.get(note.actorId) ?? null;
    this.lastState.set(note.actorId, note.to);
    this.pending.push(note);
    this.dirty.add(note.deploymentId);
    this.schedule();
  }

  /** A context change without a transition: rewrite the deployment's subtree. */
  touch(deploymentId: string): void {
    this.dirty.add(deploymentId);
    this.schedule();
  }

  /** Resolves once everything recorded so far is durable. */
  barrier(): Promise<void> {
    if (this.failure) return Promise.reject(this.failure);
    if (!this.hasWork() && !this.flushing) return Promise.resolve();
    return new Promise((resolve, reject) => {
      this.waiters.push({ resolve, reject });
      this.schedule();
    });
  }

  /**
   * For readers: resolves once what was recorded so far is durable, or as soon as writing it
   * failed. A read may go on then: the failed batch stays queued and is sent again (after a
   * pause, logged by the owner of `flush`), and `/ready` reports the store, so the read answers
   * from the live tree instead of failing as well.
   */
  settled(): Promise<void> {
    return this.barrier().catch(() => undefined);
  }

  /** Flushes what is queued; resolves when it is written. */
  async flush(): Promise<void> {
    if (this.timer !== null) {
      this.clock.clearTimeout(this.timer);
      this.timer = null;
    }
    while (this.flushing) await this.flushing;
    if (!this.hasWork()) {
      this.release();
      return;
    }
    this.flushing = this.writeBatch().finally(() => {
      this.flushing = null;
    });
    await this.flushing;
    if (this.hasWork()) return this.flush();
    this.release();
  }

  private hasWork(): boolean {
    return this.pending.length > 0 || this.dirty.size > 0 || this.unconfirmed !== null;
  }

  private release(): void {
    const waiters = this.waiters;
    this.waiters = [];
    for (const w of waiters) {
      if (this.failure) w.reject(this.failure);
      else w.resolve();
    }
  }

  private schedule(): void {
    if (this.timer !== null || this.flushing) {
      // A running flush loops until the queue is empty.
      return;
    }
    this.timer = this.clock.setTimeout(() => {
      this.timer = null;
      this.flush().catch((err) => {
        // Waiters were told; what failed is queued again. Retry after a pause, so a database
        // outage costs one attempt a second rather than a busy loop.
        this.opts.onError?.(err);
        this.timer = this.clock.setTimeout(() => {
          this.timer = null;
          this.schedule();
        }, RETRY_AFTER_MS);
      });
    }, this.opts.flushDelayMs ?? 2);
  }

  private async writeBatch(): Promise<void> {
    if (this.unconfirmed) {
      const retried = this.unconfirmed;
      await this.send(retried, { retry: true });
      this.unconfirmed = null;
      // Its subtrees are as they were when it failed: write them as they are now too.
      for (const w of retried) this.dirty.add(w.deploymentId);
    }
    const notes = this.pending;
    const dirty = [...this.dirty];
    this.pending = [];
    this.dirty.clear();
    const writes: ActorWrite[] = [];
    const subtrees = new Map<string, PersistedSubtree | undefined>();
    const subtree = (id: string) => {
      if (!subtrees.has(id)) subtrees.set(id, this.source.persisted(id));
      return subtrees.get(id);
    };
    const nextVersion = (actorId: string) => {
      const v = this.versions.get(actorId) ?? 0;
      this.versions.set(actorId, v + 1);
      return v;
    };

    for (const n of notes) {
      const from = n.from ?? null;
      const tree = subtree(n.deploymentId);
      let snapshot: unknown;
      if (n.kind === 'deployment') snapshot = tree ?? { value: n.to };
      else snapshot = tree?.children[n.actorId]?.snapshot ?? { value: n.to, status: 'done' };
      writes.push({
        actorId: n.actorId,
        kind: n.kind,
        deploymentId: n.deploymentId,
        parentId: n.kind === 'deployment' ? null : deploymentActorId(n.deploymentId),
        state: n.to,
        snapshot,
        expectedVersion: nextVersion(n.actorId),
        transition: { from, to: n.to, event: n.event, reason: n.reason, at: n.at },
        ...(n.replica ? { replica: n.replica } : {}),
        ...(n.route ? { route: n.route } : {}),
      });
    }
    // Deployment subtrees that changed without a transition of their own, or whose children
    // moved: the deployment row carries the whole subtree, which is what restore reads.
    for (const deploymentId of dirty) {
      const tree = subtree(deploymentId);
      if (!tree) continue;
      const actorId = deploymentActorId(deploymentId);
      writes.push({
        actorId,
        kind: 'deployment',
        deploymentId,
        parentId: null,
        state: topState(tree.value),
        snapshot: tree,
        expectedVersion: nextVersion(actorId),
      });
    }
    if (writes.length === 0) return;
    // Versions are advanced for good: a failed batch is sent again as it is (see the top).
    this.unconfirmed = writes;
    await this.send(writes, { retry: false });
    this.unconfirmed = null;
  }

  /** One `writeActors` call; on failure the waiters are told and the error is thrown. */
  private async send(writes: ActorWrite[], opts: { retry: boolean }): Promise<void> {
    // A measurement, not logic: sub-millisecond and monotonic, so not the injected clock.
    const started = performance.now();
    try {
      let { conflicts } = await this.store.writeActors(writes);
      if (conflicts.length > 0 && opts.retry) {
        // The first attempt may still have been running when this one read the rows (its
        // commit not yet visible to this statement): once more, now that it has finished.
        ({ conflicts } = await this.store.writeActors(writes));
      }
      if (conflicts.length > 0) {
        this.stats.conflicts += conflicts.length;
        this.opts.onConflict?.(conflicts);
      }
    } catch (err) {
      this.failure = err;
      this.release();
      this.failure = null;
      throw err;
    }
    const ms = performance.now() - started;
    this.stats.flushes += 1;
    this.stats.writes += writes.length;
    this.stats.lastFlushMs = ms;
    this.opts.onFlush?.(ms, writes.length);
  }
}
