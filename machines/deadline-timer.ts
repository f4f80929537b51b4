/**
 * A durable timer: an invoked callback actor that takes an absolute deadline (epoch ms) as
 * input and sends `deadline.reached` back when it passes.
 *
 * Why not `after`: XState does not restore pending `after` delays from a persisted snapshot
 * (statelyai/xstate#5331). An invoked actor is restarted on restore with its persisted input,
 * so the deadline is re-armed with exactly the time that is left (or fires at once if passed).
 *
 * Time and scheduling come from the machine's one clock (./clock.ts); the default in each
 * machine's `setup` is `deadlineTimer` (no clock: it fails when started), and
 * `<machine>WithClock(clock)` provides `deadlineTimerOn(clock)`.
 */
import { fromCallback } from 'xstate';
import { type MachineClock, unprovidedClock } from './clock.ts';

export interface DeadlineInput {
  /** epoch ms */
  deadline: number;
  /** Names the timer in the event, so one state can run several. */
  key: string;
}

export interface DeadlineReachedEvent {
  type: 'deadline.reached';
  key: string;
}

/** setTimeout's limit; longer deadlines re-arm in steps. */
const MAX_DELAY = 2_147_483_647;

/** The deadline timer scheduling on `clock`. */
export function deadlineTimerOn(clock: MachineClock) {
  return fromCallback<{ type: 'deadline.noop' }, DeadlineInput>(({ input, sendBack }) => {
    let timer: unknown;
    const arm = () => {
      const left = input.deadline - clock.now();
      if (left <= 0) {
        sendBack({ type: 'deadline.reached', key: input.key } satisfies DeadlineReachedEvent);
        return;
      }
      timer = clock.setTimeout(arm, Math.min(left, MAX_DELAY));
    };
    // Fire asynchronously even when already due, so the sender is never re-entered during start.
    timer = clock.setTimeout(arm, 0);
    return () => clock.clearTimeout(timer);
  });
}

/** The placeholder in each machine's `setup`; the clock is provided with the machine's clock. */
export const deadlineTimer = deadlineTimerOn(unprovidedClock);
