import { isFlotillaError } from '../domain/errors.ts';
import type { Store } from './store.ts';

/** One history row of an event that changes no state (see `Store.recordEvents`). */
export type RecordedEvent = Parameters<Store['recordEvents']>[0][number];

export interface EventOutboxOptions {
  /** Writes rows in order; a retryable FlotillaError means "try again later". */
  write: (events: RecordedEvent[]) => Promise<void>;
  /** Rows kept while the store is away; past it the oldest are dropped (and counted). Default 10,000. */
  maxPending?: number;
  /** First wait before writing again after a retryable failure; doubles up to 5 s. Default 250. */
  retryMs?: number;
  logger?: { warn(obj: object, msg?: string): void; info(obj: object, msg?: string): void };
}

export interface EventOutbox {
  add(event: RecordedEvent): void;
  /** Rows not yet written. */
  pending(): number;
  /** Rows dropped so far (queue full, or refused by the store for good). */
  dropped(): number;
  /** Resolves when every row added so far is written or dropped (tests, shutdown). */
  drained(): Promise<void>;
  /** Stops retrying; rows still pending are dropped (and logged as such). */
  close(): void;
}

const MAX_RETRY_MS = 5_000;
const BATCH = 500;

/**
 * Keeps history rows that could not be written while the store was away (issue 15: outlier
 * ejections were dropped during a PostgreSQL outage) and writes them, in order, when it
 * returns. Bounded: a long outage drops the oldest rows, not the process's memory. A row the
 * store refuses for good (not retryable, e.g. its deployment is gone) is dropped alone.
 */
export function createEventOutbox(opts: EventOutboxOptions): EventOutbox {
  const max = opts.maxPending ?? 10_000;
  const firstRetryMs = opts.retryMs ?? 250;
  const queue: RecordedEvent[] = [];
  let droppedCount = 0;
  let running: Promise<void> | undefined;
  let timer: NodeJS.Timeout | undefined;
  let wake: (() => void) | undefined;
  let closed = false;
  let outage = false;

  const sleep = (ms: number) =>
    new Promise<void>((resolve) => {
      wake = resolve;
      timer = setTimeout(resolve, ms);
      timer.unref();
    });

  /** Puts rows that could not be written back in front, then keeps the newest `max`. */
  function requeue(rows: RecordedEvent[]): void {
    queue.unshift(...rows);
    trim();
  }

  function trim(): void {
    const over = queue.length - max;
    if (over <= 0) return;
    queue.splice(0, over);
    droppedCount += over;
    // Once at the first drop and then every 1,000, not once per event of a long outage.
    if (
      droppedCount === over ||
      Math.floor(droppedCount / 1000) > Math.floor((droppedCount - over) / 1000)
    ) {
      opts.logger?.warn(
        { dropped: droppedCount, max },
        'proxy event queue full; dropped the oldest',
      );
    }
  }

  async function writeSome(): Promise<void> {
    let retryMs = firstRetryMs;
    while (queue.length > 0 && !closed) {
      // Out of the queue while in flight, so `add` trimming the queue cannot shift it.
      const batch = queue.splice(0, BATCH);
      try {
        await opts.write(batch);
        retryMs = firstRetryMs;
        if (outage) {
          outage = false;
          opts.logger?.info({ pending: queue.length }, 'recording proxy events again');
        }
      } catch (err) {
        if (isFlotillaError(err) && err.retryable) {
          requeue(batch);
          if (!outage) {
            outage = true;
            opts.logger?.warn(
              { err, pending: queue.length },
              'recording a proxy event failed; keeping it to write when the store returns',
            );
          }
          await sleep(retryMs);
          retryMs = Math.min(MAX_RETRY_MS, retryMs * 2);
          continue;
        }
        // Refused for good: write the batch row by row so one bad row costs only itself.
        await writeOneByOne(batch);
      }
    }
  }

  async function writeOneByOne(batch: RecordedEvent[]): Promise<void> {
    for (let i = 0; i < batch.length; i++) {
      const event = batch[i] as RecordedEvent;
      try {
        await opts.write([event]);
      } catch (err) {
        if (isFlotillaError(err) && err.retryable) {
          // The store left: the rest goes back for the loop to retry.
          requeue(batch.slice(i));
          return;
        }
        droppedCount++;
        opts.logger?.warn({ err, event: event.event }, 'a proxy event was refused; dropped');
      }
    }
  }

  function kick(): void {
    if (running || closed) return;
    running = writeSome().finally(() => {
      running = undefined;
      if (queue.length > 0 && !closed) kick();
    });
  }

  return {
    add(event) {
      if (closed) return;
      queue.push(event);
      trim();
      kick();
    },
    pending: () => queue.length,
    dropped: () => droppedCount,
    async drained() {
      while (running) await running;
    },
    close() {
      if (closed) return;
      closed = true;
      clearTimeout(timer);
      wake?.();
      if (queue.length > 0) {
        droppedCount += queue.length;
        opts.logger?.warn({ pending: queue.length }, 'closing with proxy events not recorded');
        queue.length = 0;
      }
    },
  };
}
