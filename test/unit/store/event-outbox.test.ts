import { afterEach, describe, expect, it } from 'vitest';
import { FlotillaError } from '../../../src/domain/errors.ts';
import { createEventOutbox, type RecordedEvent } from '../../../src/store/event-outbox.ts';
import { waitFor } from '../../harness/wait.ts';

function event(n: number): RecordedEvent {
  return {
    actorId: `route:r${n}`,
    kind: 'route',
    deploymentId: 'd1',
    state: 'HEALTHY',
    event: n % 2 ? 'outlier.ejected' : 'outlier.returned',
    reason: `event ${n}`,
    at: new Date(1_700_000_000_000 + n),
  };
}

/** A sink that behaves like the store: refuses with a retryable 503 while `down`. */
function sink() {
  const written: RecordedEvent[] = [];
  const state = { down: false, refuse: new Set<string>() };
  const write = async (events: RecordedEvent[]) => {
    if (state.down) {
      throw new FlotillaError('dependency_unavailable', 'PostgreSQL unreachable', {
        retryable: true,
      });
    }
    if (events.some((e) => state.refuse.has(e.reason ?? ''))) {
      throw new FlotillaError('conflict', 'foreign key "events_deployment_id_fkey" violated');
    }
    written.push(...events);
  };
  return { written, state, write };
}

const outboxes: { close(): void }[] = [];
afterEach(() => {
  for (const o of outboxes.splice(0)) o.close();
});

describe('the proxy event outbox', () => {
  it('keeps events recorded during a store outage and writes them, in order, when it returns', async () => {
    const s = sink();
    const outbox = createEventOutbox({ write: s.write, retryMs: 10 });
    outboxes.push(outbox);
    s.state.down = true;
    for (let n = 1; n <= 5; n++) outbox.add(event(n));
    await waitFor(() => outbox.pending() === 5, { message: 'five pending during the outage' });
    expect(s.written).toEqual([]);
    s.state.down = false;
    await waitFor(() => s.written.length === 5, { message: 'all five written after the outage' });
    expect(s.written.map((e) => e.reason)).toEqual([1, 2, 3, 4, 5].map((n) => `event ${n}`));
    expect(outbox.dropped()).toBe(0);
  });

  it('is bounded: a long outage drops the oldest events and counts them', async () => {
    const s = sink();
    const outbox = createEventOutbox({ write: s.write, retryMs: 10, maxPending: 3 });
    outboxes.push(outbox);
    s.state.down = true;
    for (let n = 1; n <= 10; n++) outbox.add(event(n));
    expect(outbox.pending()).toBeLessThanOrEqual(3);
    s.state.down = false;
    await waitFor(() => outbox.pending() === 0 && s.written.length === 3, {
      message: 'the newest three written',
    });
    expect(s.written.map((e) => e.reason)).toEqual(['event 8', 'event 9', 'event 10']);
    expect(outbox.dropped()).toBe(7);
  });

  it('drops only the event the store refuses for good, and writes the others', async () => {
    const s = sink();
    s.state.refuse.add('event 2');
    const outbox = createEventOutbox({ write: s.write, retryMs: 10 });
    outboxes.push(outbox);
    s.state.down = true;
    for (let n = 1; n <= 3; n++) outbox.add(event(n));
    s.state.down = false;
    await waitFor(() => s.written.length === 2 && outbox.pending() === 0, {
      message: 'the two good events written',
    });
    expect(s.written.map((e) => e.reason)).toEqual(['event 1', 'event 3']);
    expect(outbox.dropped()).toBe(1);
  });
});
