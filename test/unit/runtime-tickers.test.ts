import { afterEach, describe, expect, it, vi } from 'vitest';
import { Tickers } from '../../src/runtime/tickers.ts';

describe('Tickers', () => {
  afterEach(() => {
    vi.useRealTimers();
  });

  it('runs each ticker every interval and reports a failed run without stopping it', async () => {
    vi.useFakeTimers();
    const errors: unknown[] = [];
    const tickers = new Tickers((err) => errors.push(err));
    let runs = 0;
    tickers.every(2, async () => {
      runs++;
      if (runs === 1) throw new Error('first run fails');
    });
    await vi.advanceTimersByTimeAsync(1_999);
    expect(runs).toBe(0);
    await vi.advanceTimersByTimeAsync(1);
    expect(runs).toBe(1);
    expect(errors).toEqual([new Error('first run fails')]);
    await vi.advanceTimersByTimeAsync(4_000);
    expect(runs).toBe(3);
    await tickers.stop();
  });

  it('stop clears the intervals and runs the cleanups once, in order', async () => {
    vi.useFakeTimers();
    const tickers = new Tickers(() => {});
    let runs = 0;
    tickers.every(1, async () => {
      runs++;
    });
    const order: string[] = [];
    tickers.onStop(() => {
      order.push('a');
    });
    tickers.onStop(async () => {
      order.push('b');
    });
    await tickers.stop();
    await tickers.stop();
    await vi.advanceTimersByTimeAsync(5_000);
    expect(runs).toBe(0);
    expect(order).toEqual(['a', 'b']);
  });

  it('a cleanup added after stop (a subscription that resolved late) runs at once', async () => {
    const tickers = new Tickers(() => {});
    await tickers.stop();
    const ran = new Promise<string>((resolve) => tickers.onStop(() => resolve('ran')));
    await expect(ran).resolves.toBe('ran');
  });
});
