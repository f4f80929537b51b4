/**
 * The leader's lease watchdog (src/etcd/lease-renewal.ts) against a scripted keepalive stream,
 * with a clock the test moves: a stall is the clock moving while no timer runs (an event loop
 * held by a restore), a partition is time passing with timers running and no answers.
 */
import { EventEmitter } from 'node:events';
import type { Etcd3 } from 'etcd3';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { leaseRenewal } from '../../src/etcd/lease-renewal.ts';

const TTL_S = 5;
let clock = 0;

class FakeStream extends EventEmitter {
  /** Clock at each keepalive written. */
  readonly writes: number[] = [];
  private answered = 0;
  write(_req: { ID: string }): void {
    this.writes.push(clock);
  }
  end(): void {}
  /** Answers every keepalive not answered yet with this TTL (etcd: 0 = expired). */
  answerAll(ttl = TTL_S): void {
    while (this.answered < this.writes.length) {
      this.answered++;
      this.emit('data', { TTL: String(ttl) });
    }
  }
}

function setup() {
  const stream = new FakeStream();
  const client = {
    leaseClient: { leaseKeepAlive: async () => stream },
  } as unknown as Etcd3;
  const lost: string[] = [];
  const lostAt: number[] = [];
  const renewal = leaseRenewal(
    client,
    '42',
    TTL_S,
    (r) => {
      lost.push(r);
      lostAt.push(clock);
    },
    { now: () => clock },
  );
  return { stream, renewal, lost, lostAt };
}

/** Time passes with the event loop running: timers fire, etcd answers (unless `answer` false). */
async function run(ms: number, stream: FakeStream, answer = true): Promise<void> {
  for (let t = 0; t < ms; t += 50) {
    clock += 50;
    await vi.advanceTimersByTimeAsync(50);
    if (answer) stream.answerAll();
  }
}

/**
 * The event loop held for `ms`: the clock moves and no timer runs meanwhile; then the overdue
 * renewal timer fires (once, seeing the clock at the stall's end), as after a real stall.
 */
async function stall(ms: number): Promise<void> {
  clock += ms;
  await vi.advanceTimersByTimeAsync(1_000);
}

beforeEach(() => {
  clock = 1_000_000;
  vi.useFakeTimers();
});
afterEach(() => {
  vi.useRealTimers();
});

async function started() {
  const s = setup();
  const ok = s.renewal.start();
  await vi.advanceTimersByTimeAsync(0);
  s.stream.answerAll();
  expect(await ok).toBe(true);
  return s;
}

describe('lease renewal', () => {
  it('renews every TTL/5 and stays confirmed while etcd answers', async () => {
    const { stream, renewal, lost } = await started();
    await run(10_000, stream);
    expect(lost).toEqual([]);
    expect(renewal.confirmed()).toBe(true);
    // 1 + one per second.
    expect(stream.writes.length).toBeGreaterThanOrEqual(10);
  });

  it('a stall longer than a renewal interval but shorter than the lease is settled by one late keepalive: leadership kept', async () => {
    const { stream, renewal, lost } = await started();
    await run(2_000, stream);
    const before = stream.writes.length;
    await stall(4_600);
    // Past the confirmation (sent + TTL − 0.5 s): not confirmed until etcd answers.
    expect(renewal.confirmed()).toBe(false);
    expect(lost).toEqual([]);
    expect(stream.writes.length).toBeGreaterThan(before);
    stream.answerAll();
    await vi.advanceTimersByTimeAsync(0);
    expect(renewal.confirmed()).toBe(true);
    await run(5_000, stream);
    expect(lost).toEqual([]);
  });

  it('a stall answered with an expired lease is a loss', async () => {
    const { stream, lost } = await started();
    await run(2_000, stream);
    await stall(5_000);
    stream.answerAll(0);
    await vi.advanceTimersByTimeAsync(0);
    expect(lost).toEqual(['lease 42 expired']);
  });

  it('a stall past the lease is a loss at once, without asking etcd', async () => {
    const { stream, renewal, lost } = await started();
    await run(2_000, stream);
    const before = stream.writes.length;
    await stall(8_000);
    expect(lost).toHaveLength(1);
    expect(lost[0]).toMatch(/^stalled 8\d{3} ms, past lease 42/);
    expect(renewal.confirmed()).toBe(false);
    expect(stream.writes.length).toBe(before);
  });

  it('etcd silent while the loop runs (a partition): lost at sent + TTL − 0.5 s, before the lease can expire', async () => {
    const { stream, lost, lostAt } = await started();
    await run(1_000, stream);
    const lastAnswered = stream.writes.at(-1) as number;
    await run(6_000, stream, false);
    expect(lost).toHaveLength(1);
    expect(lost[0]).toMatch(/not confirmed by etcd/);
    // At the bound (within this test's 50 ms step), before the lease's own end.
    const bound = lastAnswered + TTL_S * 1000 - 500;
    expect(lostAt[0]).toBeGreaterThanOrEqual(bound);
    expect(lostAt[0]).toBeLessThanOrEqual(bound + 50);
  });

  it('a stall whose late keepalive gets no answer within a renewal interval is a loss', async () => {
    const { stream, lost } = await started();
    await run(2_000, stream);
    await stall(5_000);
    expect(lost).toEqual([]);
    await run(1_100, stream, false);
    expect(lost).toHaveLength(1);
    expect(lost[0]).toMatch(/after a 5\d{3} ms stall/);
  });
});
