import type { ReplicaExit } from './backend.ts';

/**
 * Delivers replica exits to `onExit` listeners. Exits noticed while nobody listens are kept and
 * handed to the first listener (after it has its unsubscribe function), so none is lost
 * between creating a backend and subscribing. A listener that throws does not stop the others.
 */
export class ExitNotifier {
  private readonly listeners = new Set<(exit: ReplicaExit) => void>();
  private pending: ReplicaExit[] = [];

  subscribe(listener: (exit: ReplicaExit) => void): () => void {
    this.listeners.add(listener);
    if (this.pending.length > 0) {
      const pending = this.pending;
      this.pending = [];
      setImmediate(() => {
        for (const exit of pending) this.emit(exit);
      });
    }
    return () => {
      this.listeners.delete(listener);
    };
  }

  emit(exit: ReplicaExit): void {
    if (this.listeners.size === 0) {
      this.pending.push(exit);
      return;
    }
    for (const listener of [...this.listeners]) {
      try {
        listener(exit);
      } catch {
        // One listener's failure must not hide the death from the others.
      }
    }
  }

  clear(): void {
    this.listeners.clear();
    this.pending = [];
  }
}
