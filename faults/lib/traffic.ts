/**
 * Proxied traffic: `concurrency` loops, each sending GET <proxy>/<deployment>/v1/models one
 * after another (3 s deadline each) and recording when it started, when it ended and whether
 * it got a 200 from a replica.
 */
export interface Sample {
  start: number;
  end: number;
  ok: boolean;
  status: number;
  target: string;
  replica: string | null;
}

export class Traffic {
  readonly samples: Sample[] = [];
  private running = false;
  private loops: Promise<void>[] = [];

  constructor(
    /** The URLs to choose from, as `<proxy base>/<deployment>/v1/models`; read before each request. */
    private readonly targets: () => readonly string[],
    private readonly concurrency = 4,
    private readonly pauseMs = 25,
    private readonly timeoutMs = 3_000,
  ) {}

  start(): void {
    this.running = true;
    for (let i = 0; i < this.concurrency; i++) this.loops.push(this.loop(i));
  }

  async stop(): Promise<void> {
    this.running = false;
    await Promise.all(this.loops);
    this.loops = [];
  }

  private async loop(i: number): Promise<void> {
    let n = i;
    while (this.running) {
      const ts = this.targets();
      if (ts.length === 0) {
        await new Promise((r) => setTimeout(r, 50));
        continue;
      }
      const target = ts[n++ % ts.length]!;
      const start = performance.now();
      let ok = false;
      let status = 0;
      let replica: string | null = null;
      try {
        const res = await fetch(target, { signal: AbortSignal.timeout(this.timeoutMs) });
        status = res.status;
        replica = res.headers.get('x-flotilla-replica');
        await res.arrayBuffer();
        ok = status === 200 && replica !== null;
      } catch {
        ok = false;
      }
      this.samples.push({ start, end: performance.now(), ok, status, target, replica });
      await new Promise((r) => setTimeout(r, this.pauseMs));
    }
  }

  /** Requests that started in [from, to): sent and failed. */
  window(
    from: number,
    to: number,
  ): { sent: number; failed: number; statuses: Record<string, number> } {
    let sent = 0;
    let failed = 0;
    const statuses: Record<string, number> = {};
    for (const s of this.samples) {
      if (s.start < from || s.start >= to) continue;
      sent++;
      if (!s.ok) {
        failed++;
        statuses[String(s.status)] = (statuses[String(s.status)] ?? 0) + 1;
      }
    }
    return { sent, failed, statuses };
  }

  totals(): { sent: number; failed: number } {
    return { sent: this.samples.length, failed: this.samples.filter((s) => !s.ok).length };
  }
}
