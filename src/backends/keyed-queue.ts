import { DEFAULT_STOP_GRACE_MS } from './backend.ts';

/**
 * Runs async operations one at a time per key, in call order; different keys run concurrently.
 * The backends use it so that a start and a stop of one replica id never interleave (a stop that
 * arrives while the start is under way waits for it, then stops what it started).
 */
export class KeyedQueue {
  private readonly tails = new Map<string, Promise<void>>();

  /**
   * Runs `fn` after every operation queued earlier for `key` has settled (fulfilled or
   * rejected: one failure does not block the operations behind it). Resolves or rejects as
   * `fn` does.
   */
  run<T>(key: string, fn: () => Promise<T>): Promise<T> {
    const previous = this.tails.get(key) ?? Promise.resolve();
    const result = previous.then(fn);
    const tail = result.then(
      () => undefined,
      () => undefined,
    );
    this.tails.set(key, tail);
    void tail.then(() => {
      // Only the last operation for a key removes the entry, so the map holds busy keys only.
      if (this.tails.get(key) === tail) this.tails.delete(key);
    });
    return result;
  }

  /** Whether an operation for `key` is queued or running. */
  has(key: string): boolean {
    return this.tails.has(key);
  }

  /** The keys with an operation queued or running. */
  keys(): IterableIterator<string> {
    return this.tails.keys();
  }
}

/**
 * A backend's close(opts): with `stopReplicas`, stops every tracked replica that has not exited
 * and every id with an operation queued or running, each with `graceMs` (default
 * DEFAULT_STOP_GRACE_MS). A replica being started is in `ops` before it is tracked; its stop
 * queues behind the start, so what the start made is stopped.
 */
export async function stopAtClose(
  opts: { stopReplicas: boolean; graceMs?: number },
  ops: KeyedQueue,
  tracked: ReadonlyMap<string, { state: string }>,
  stop: (replicaId: string, graceMs: number) => Promise<void>,
): Promise<void> {
  if (!opts.stopReplicas) return;
  const grace = opts.graceMs ?? DEFAULT_STOP_GRACE_MS;
  const ids = new Set(ops.keys());
  for (const [id, t] of tracked) if (t.state !== 'exited') ids.add(id);
  await Promise.all([...ids].map((id) => stop(id, grace)));
}
