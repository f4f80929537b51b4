/**
 * State-name lists derived from the machines themselves, so a list elsewhere (the runtime's
 * live states, the metrics gauges) cannot drift from the machine it describes.
 */
import type { AnyStateMachine } from 'xstate';

/**
 * The names in `names` whose top-level state in `machine` is not final, in `names`' order:
 * the states an actor of that machine is alive in.
 */
export function liveStates<S extends string>(
  machine: AnyStateMachine,
  names: readonly S[],
): readonly S[] {
  return Object.freeze(names.filter((s) => machine.root.states[s]?.type !== 'final'));
}

/** The top-level state names of `machine`, in definition order. */
export function topLevelStates(machine: AnyStateMachine): string[] {
  return Object.keys(machine.root.states);
}
