/**
 * A durable timer: an invoked callback actor that takes an absolute deadline (epoch ms) as
 * input and sends `deadline.reached` back when it passes.
 *
 * Why not `after`: XState does not restore pending `after` delays from a persisted snapshot
 * (statelyai/xstate#5331). An invoked actor is restarted on restore with its persisted input,
 * so the deadline is re-armed with exactly the time that is left (or fires at once if passed).
 */
import { fromCallback } from 'xstate';

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

export const deadlineTimer = fromCallback<{ type: 'deadline.noop' }, DeadlineInput>(
  ({ input, sendBack }) => {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const arm = () => {
      const left = input.deadline - Date.now();
      if (left <= 0) {
        sendBack({ type: 'deadline.reached', key: input.key } satisfies DeadlineReachedEvent);
        return;
      }
      timer = setTimeout(arm, Math.min(left, MAX_DELAY));
    };
    // Fire asynchronously even when already due, so the sender is never re-entered during start.
    timer = setTimeout(arm, 0);
    return () => clearTimeout(timer);
  },
);
