import { pino } from 'pino';

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
