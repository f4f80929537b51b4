import { pino } from 'pino';
import type { HealthRecord } from '../domain/health.ts';
import { copyHealthRecord } from './health-record-codec.ts';

/** The slice of a pino logger the health pipeline writes to; a pino Logger satisfies it. */
export interface HealthLogger {
  info(obj: object, msg: string): void;
  warn(obj: object, msg: string): void;
  error(obj: object, msg: string): void;
}

/** Default logger when the composition root passes none. */
export function defaultHealthLogger(name: string): HealthLogger {
  return pino({ name, level: 'info' });
}

export function errorText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/**
 * Delivers a health change to each of `listeners` (a copy each) on a later microtask, as over
 * Redis: a publisher never runs listener code inside its own call stack. A listener that
 * throws is logged (to `log()`), and the others still get the change.
 */
export function deliverLater(
  listeners: Iterable<(record: HealthRecord) => void>,
  record: HealthRecord,
  log: () => HealthLogger,
): void {
  const snapshot = [...listeners];
  queueMicrotask(() => {
    for (const l of snapshot) {
      try {
        l(copyHealthRecord(record));
      } catch (err) {
        log().error(
          { err: errorText(err), routeId: record.routeId },
          'health change listener threw',
        );
      }
    }
  });
}
