/**
 * Steps a machine with XState's pure `initialTransition()` / `transition()`: no actor is
 * created, no effect runs, no timer is armed, so a test that checks one step needs no fake
 * timers and no flushing. It offers the two methods those tests used on a live actor (`send`,
 * `getSnapshot`) plus the actions the last step would have executed.
 */
import {
  type AnyStateMachine,
  type EventFromLogic,
  type InputFrom,
  initialTransition,
  transition,
} from 'xstate';

export function pureActor<M extends AnyStateMachine>(machine: M, input: InputFrom<M>) {
  let [snapshot, actions] = initialTransition(machine, input);
  return {
    send(event: EventFromLogic<M>): void {
      [snapshot, actions] = transition(machine, snapshot, event);
    },
    getSnapshot: () => snapshot,
    /** `[type, params]` of each action the last step would have executed, in order. */
    lastActions: (): Array<[string, unknown]> => actions.map((a) => [a.type, a.params]),
  };
}
