/**
 * The one clock a machine reads. Machines never touch the wall clock or the timer globals
 * (biome.json forbids `Date`, `setTimeout`, `setInterval` and `performance` in machines/):
 * time comes in through `machine.provide()`, the way Temporal's workflow sandbox hands a
 * workflow its deterministic time. Each machine module exports a `<machine>WithClock(clock)`
 * that provides its two kinds of time effect from this one object:
 *   - the `set...Deadline` actions: a context deadline (epoch ms) = `clock.now()` + a duration;
 *   - the `deadlineTimer` actor: sends `deadline.reached` once `clock.now()` passes the
 *     deadline, scheduling on `clock.setTimeout`.
 * The runtime passes its clock (src/runtime/provide-effects.ts, default the system clock);
 * tests pass XState's `SimulatedClock` (it has exactly this shape) or a clock of their own, so
 * no test needs wall time. Snapshots stay plain JSON: only absolute deadlines (epoch ms) are in
 * context, never the clock.
 */
export interface MachineClock {
  /** Epoch ms. */
  now(): number;
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(id: unknown): void;
}

function noClock(): never {
  throw new Error(
    'machine clock not provided: use <machine>WithClock(clock) (the runtime does, in provideEffects)',
  );
}

/** The default in each `setup`: a machine without a provided clock fails loudly at its first use of time. */
export const unprovidedClock: MachineClock = {
  now: noClock,
  setTimeout: noClock,
  clearTimeout: () => {},
};
