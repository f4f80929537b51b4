import { describe, expect, it } from 'vitest';
import { DEFAULT_STOP_GRACE_MS } from '../../../src/backends/backend.ts';
import { KeyedQueue, stopAtClose } from '../../../src/backends/keyed-queue.ts';

function deferred<T = void>() {
  let resolve!: (v: T) => void;
  let reject!: (e: unknown) => void;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

describe('KeyedQueue', () => {
  it('runs the operations of one key one at a time, in call order', async () => {
    const q = new KeyedQueue();
    const order: string[] = [];
    const gate = deferred();
    const first = q.run('r1', async () => {
      order.push('first:start');
      await gate.promise;
      order.push('first:end');
      return 1;
    });
    const second = q.run('r1', async () => {
      order.push('second');
      return 2;
    });
    await new Promise((r) => setImmediate(r));
    expect(order).toEqual(['first:start']);
    gate.resolve();
    expect(await Promise.all([first, second])).toEqual([1, 2]);
    expect(order).toEqual(['first:start', 'first:end', 'second']);
  });

  it('runs different keys concurrently', async () => {
    const q = new KeyedQueue();
    const gate = deferred();
    const blocked = q.run('a', () => gate.promise);
    const other = await q.run('b', async () => 'b done');
    expect(other).toBe('b done');
    gate.resolve();
    await blocked;
  });

  it('a failed operation rejects its caller and does not block the next one', async () => {
    const q = new KeyedQueue();
    const failed = q.run('r', async () => {
      throw new Error('start failed');
    });
    const next = q.run('r', async () => 'stopped');
    await expect(failed).rejects.toThrow('start failed');
    expect(await next).toBe('stopped');
  });

  it('knows which keys are busy and forgets a key once its last operation settled', async () => {
    const q = new KeyedQueue();
    const gate = deferred();
    const running = q.run('busy', () => gate.promise);
    expect(q.has('busy')).toBe(true);
    expect(q.has('idle')).toBe(false);
    expect([...q.keys()]).toEqual(['busy']);
    gate.resolve();
    await running;
    await new Promise((r) => setImmediate(r));
    expect(q.has('busy')).toBe(false);
    expect([...q.keys()]).toEqual([]);
  });
});

describe('stopAtClose', () => {
  it('with stopReplicas, stops the live tracked replicas and the ids still being started, not the exited ones', async () => {
    const ops = new KeyedQueue();
    const gate = deferred();
    const starting = ops.run('starting', () => gate.promise);
    const tracked = new Map([
      ['running', { state: 'running' }],
      ['stopping', { state: 'stopping' }],
      ['exited', { state: 'exited' }],
    ]);
    const stopped: string[] = [];
    // Queued behind the start, as a backend's stop() is.
    const graces = new Set<number>();
    const done = stopAtClose({ stopReplicas: true }, ops, tracked, (id, grace) =>
      ops.run(id, async () => {
        graces.add(grace);
        stopped.push(id);
      }),
    );
    await new Promise((r) => setImmediate(r));
    expect(stopped.sort()).toEqual(['running', 'stopping']);
    gate.resolve();
    await Promise.all([starting, done]);
    expect(stopped.sort()).toEqual(['running', 'starting', 'stopping']);
    expect([...graces]).toEqual([DEFAULT_STOP_GRACE_MS]);
  });

  it('without stopReplicas, stops nothing', async () => {
    const stopped: string[] = [];
    await stopAtClose(
      { stopReplicas: false, graceMs: 5 },
      new KeyedQueue(),
      new Map([['running', { state: 'running' }]]),
      async (id) => {
        stopped.push(id);
      },
    );
    expect(stopped).toEqual([]);
  });
});
