/**
 * The process's real clock: wall time and the global timers. The default wherever a clock is
 * injectable (the machines through provideEffects, the snapshot writer), so tests can pass a
 * manual one instead (XState's `SimulatedClock` has this shape) and never wait on wall time.
 */
import type { MachineClock } from '../../machines/clock.ts';

/** Epoch-ms time plus timers; the same shape the machines read (machines/clock.ts). */
export type Clock = MachineClock;

export const systemClock: Clock = {
  now: () => Date.now(),
  setTimeout: (fn, ms) => setTimeout(fn, ms),
  clearTimeout: (id) => clearTimeout(id as ReturnType<typeof setTimeout>),
};
