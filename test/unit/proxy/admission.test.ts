import { afterEach, describe, expect, it, vi } from 'vitest';
import type { DeploymentRoutes } from '../../../src/domain/routing.ts';
import {
  ADMISSION_DEFAULTS,
  type AdmissionConfig,
  AdmissionController,
  PriorityQueue,
  rejectionProbability,
  resolveAdmissionConfig,
  type Waiter,
} from '../../../src/proxy/admission.ts';
import { seededRandom } from './seeded-random.ts';

function waiter(priority = 0, log?: string[], name = ''): Waiter & { outcome?: string } {
  const w: Waiter & { outcome?: string } = {
    priority,
    grant: () => {
      w.outcome = 'granted';
      log?.push(name);
    },
    expire: () => {
      w.outcome = 'expired';
    },
    evict: () => {
      w.outcome = 'evicted';
    },
  };
  return w;
}

function controller(config: Partial<AdmissionConfig> = {}, capacity = 3, random = () => 0.5) {
  const c = new AdmissionController({ ...ADMISSION_DEFAULTS, ...config }, random);
  c.setCapacity(capacity);
  return c;
}

afterEach(() => {
  vi.useRealTimers();
});

describe('admission config', () => {
  const base: DeploymentRoutes = {
    deploymentId: 'd',
    name: 'd',
    routing: { strategy: 'round_robin', request_timeout_s: 60, retries: 2 },
    routes: [],
  };

  it('uses the documented defaults when the deployment and the table say nothing (3 per replica)', () => {
    expect(resolveAdmissionConfig(base)).toEqual({
      request_timeout_s: 60,
      max_queue_size: 50,
      max_concurrent_requests: 3,
      queue_rejection_threshold: 0.8,
      rejection_threshold: 0.7,
      queue_timeout_s: 30,
      mode: 'fixed',
      initial_limit: 3,
    });
  });

  it('takes valid overrides and ignores invalid ones', () => {
    const d = {
      ...base,
      admission: { max_queue_size: 10, max_concurrent_requests: -1, rejection_threshold: 2 },
    };
    const c = resolveAdmissionConfig(d);
    expect(c.max_queue_size).toBe(10);
    expect(c.max_concurrent_requests).toBe(3);
    expect(c.rejection_threshold).toBe(0.7);
  });
});

describe('priority queue', () => {
  it('serves higher priority first and FIFO within a priority', () => {
    const q = new PriorityQueue<string>();
    q.push(0, 'a0');
    q.push(5, 'b5');
    q.push(0, 'c0');
    q.push(5, 'd5');
    q.push(-1, 'e-1');
    q.push(10, 'f10');
    expect(q.remove('c0')).toBe(true);
    const out: string[] = [];
    for (let x = q.shift(); x !== undefined; x = q.shift()) out.push(x);
    expect(out).toEqual(['f10', 'b5', 'd5', 'a0', 'e-1']);
    expect(q.size).toBe(0);
  });
});

describe('admission controller', () => {
  it('runs requests at once while slots are free, then queues them', () => {
    const c = controller({}, 3);
    for (let i = 0; i < 3; i++) expect(c.admit(waiter()).kind).toBe('run');
    expect(c.admit(waiter()).kind).toBe('queued');
    expect(c.inflight).toBe(3);
    expect(c.queued).toBe(1);
  });

  it('starts queued requests by priority, FIFO within a priority, as slots free up', () => {
    const c = controller({}, 1);
    const order: string[] = [];
    expect(c.admit(waiter()).kind).toBe('run');
    for (const [p, n] of [
      [0, 'low1'],
      [3, 'high1'],
      [0, 'low2'],
      [3, 'high2'],
    ] as const) {
      c.admit(waiter(p, order, n));
    }
    for (let i = 0; i < 4; i++) c.release();
    expect(order).toEqual(['high1', 'high2', 'low1', 'low2']);
  });

  it('expires a request that waits longer than its queue time', () => {
    vi.useFakeTimers();
    const c = controller({}, 1);
    c.admit(waiter());
    const w = waiter();
    expect(c.admit(w).kind).toBe('queued');
    c.armTimer(w, 1000);
    vi.advanceTimersByTime(999);
    expect(w.outcome).toBeUndefined();
    vi.advanceTimersByTime(1);
    expect(w.outcome).toBe('expired');
    expect(c.queued).toBe(0);
  });

  it('evicts every queued request when capacity drops to zero', () => {
    const c = controller({}, 1);
    c.admit(waiter());
    const ws = [waiter(), waiter(2)];
    for (const w of ws) c.admit(w);
    c.setCapacity(0);
    expect(ws.map((w) => w.outcome)).toEqual(['evicted', 'evicted']);
  });

  it('keeps the top of the queue for positive priorities once ordinary traffic fills its share', () => {
    const c = controller(
      { max_queue_size: 10, queue_rejection_threshold: 0.8, rejection_threshold: 1 },
      1,
    );
    c.admit(waiter());
    for (let i = 0; i < 8; i++) expect(c.admit(waiter(0)).kind).toBe('queued');
    expect(c.admit(waiter(0))).toMatchObject({ kind: 'rejected', reason: 'queue_full' });
    expect(c.admit(waiter(1)).kind).toBe('queued');
    expect(c.admit(waiter(1)).kind).toBe('queued');
    expect(c.admit(waiter(1)).kind).toBe('rejected');
    expect(c.queued).toBe(10);
  });

  it('never rejects below the threshold, always rejects at full load, and in between at random', () => {
    const seed = 1234;
    const seeded = seededRandom(seed);
    let filling = true;
    // While filling, random() = 1 never rejects below load 1; the decision uses the seed.
    const random = () => (filling ? 1 : seeded());
    // capacity 10 + queue 90 = room 100, so load moves in steps of 1 %.
    const config = { max_queue_size: 90, queue_rejection_threshold: 1 };
    let inZone = 0;
    let rejectedInZone = 0;
    for (let round = 0; round < 500; round++) {
      const c = controller(config, 10, random);
      filling = true;
      const target = Math.floor(seeded() * 101);
      for (let i = 0; i < target; i++) expect(c.admit(waiter()).kind).not.toBe('rejected');
      filling = false;
      const load = c.load();
      expect(load).toBeCloseTo(target / 100);
      const d = c.admit(waiter());
      if (load < 0.7) expect(d.kind, `seed ${seed} load ${load}`).not.toBe('rejected');
      else if (load >= 1) expect(d.kind, `seed ${seed} load ${load}`).toBe('rejected');
      else {
        inZone++;
        if (d.kind === 'rejected') rejectedInZone++;
      }
    }
    // Mean of (load − 0.7) / 0.3 over the zone's uniform loads is ≈ 0.5.
    expect(rejectedInZone / inZone, `seed ${seed}`).toBeGreaterThan(0.3);
    expect(rejectedInZone / inZone, `seed ${seed}`).toBeLessThan(0.7);
    expect(rejectionProbability(0.85, 0.7)).toBeCloseTo(0.5);
    expect(rejectionProbability(0.69, 0.7)).toBe(0);
    expect(rejectionProbability(1, 0.7)).toBe(1);
  });

  it('rejects at the graduated rate, measured over many decisions at fixed loads', () => {
    const seed = 99;
    const random = seededRandom(seed);
    // capacity 1 + queue 999 = room 1000: the load is set by the queue behind a full slot.
    const config = { ...ADMISSION_DEFAULTS, max_queue_size: 999, queue_rejection_threshold: 1 };
    for (const load of [0.5, 0.7, 0.775, 0.85, 0.925, 1]) {
      let filling = true;
      const c = new AdmissionController(config, () => (filling ? 1 : random()));
      c.setCapacity(1);
      for (let i = 0; i < Math.round(load * 1000); i++) c.admit(waiter());
      expect(c.load()).toBeCloseTo(load);
      filling = false;
      let rejected = 0;
      const n = 4000;
      for (let i = 0; i < n; i++) {
        const w = waiter();
        const d = c.admit(w);
        if (d.kind === 'rejected') rejected++;
        else c.cancel(w);
      }
      const expected = rejectionProbability(load, 0.7);
      console.log(
        `load ${load}: rejected ${(rejected / n).toFixed(3)} (expected ${expected.toFixed(3)})`,
      );
      expect(Math.abs(rejected / n - expected), `seed ${seed} load ${load}`).toBeLessThan(0.03);
    }
  });

  it('never refuses a request that finds a free slot and an empty queue, whatever the load', () => {
    // A replica batching 256 with a queue of 50: 0.7 × 306 = 214 in flight would start the
    // graduated zone with 42 slots still free.
    const c = controller({ max_queue_size: 50 }, 256, () => 0);
    for (let i = 0; i < 256; i++) expect(c.admit(waiter()).kind).toBe('run');
    expect(c.load()).toBeGreaterThan(0.7);
    expect(c.admit(waiter()).kind).toBe('rejected');
  });

  it('reports the load level: healthy, stressed, degraded, critical', () => {
    const c = controller(
      { max_queue_size: 10, queue_rejection_threshold: 0.8, rejection_threshold: 0.7 },
      10,
      () => 1,
    );
    expect(c.level()).toBe('healthy');
    for (let i = 0; i < 10; i++) c.admit(waiter());
    expect(c.level()).toBe('stressed');
    c.admit(waiter(5));
    expect(c.level()).toBe('stressed');
    for (let i = 0; i < 4; i++) c.admit(waiter(5));
    expect(c.load()).toBeCloseTo(0.75);
    expect(c.level()).toBe('degraded');
    for (let i = 0; i < 3; i++) c.admit(waiter(5));
    expect(c.queued).toBe(8);
    expect(c.level()).toBe('critical');
  });
});
