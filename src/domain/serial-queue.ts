/**
 * Runs async work one item at a time, in the order it was queued: a routing-table consumer
 * applies changes in table order this way. A failed item is reported to `onError` and the
 * queue goes on with the next; once `closed()` is true, queued items are skipped.
 */
export function serialQueue(opts: {
  closed: () => boolean;
  onError: (err: unknown) => void;
}): SerialQueue {
  let queue: Promise<void> = Promise.resolve();
  return {
    push(work) {
      queue = queue.then(async () => {
        if (opts.closed()) return;
        try {
          await work();
        } catch (err) {
          opts.onError(err);
        }
      });
      return queue;
    },
    idle: () => queue,
  };
}

export interface SerialQueue {
  /** Queues `work`; resolves when it (and everything before it) has run. Never rejects. */
  push(work: () => Promise<void>): Promise<void>;
  /** Resolves when everything queued so far has run. */
  idle(): Promise<void>;
}
