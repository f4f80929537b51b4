/**
 * Activation at the proxy: a request for a deployment that scales to zero and has no servable
 * replica is held here instead of answering 503. The first held request asks for an
 * activation (in process: the runtime; a separate proxy: the coordinator through Redis, see
 * src/runtime/activation-listener.ts); the ask is repeated every `resendMs` while requests
 * wait, which is harmless because an activation is idempotent at the coordinator. Held
 * requests resume as soon as the routing table gives the deployment a servable replica, or
 * time out (503 `activation_timeout` with Retry-After). The queue per deployment is bounded.
 */

/** One held request, as the proxy sees it. */
export interface HeldRequest {
  /** The deployment has a servable replica: route the request now. */
  resume(): void;
  /** Waited too long, the queue was full, or the proxy is closing. */
  reject(reason: 'timeout' | 'full' | 'closing'): void;
}

export interface ActivationGateOptions {
  /** Asks for the deployment to be scaled up from zero (fire and forget; errors are logged). */
  request: (deploymentId: string) => unknown;
  /** How long a request waits for a replica at most. Default 60 s. */
  timeoutMs?: number;
  /** How often the ask is repeated while requests wait. Default 1 s. */
  resendMs?: number;
  warn?: (obj: object, msg: string) => void;
}

export const DEFAULT_ACTIVATION_TIMEOUT_MS = 60_000;
export const DEFAULT_ACTIVATION_RESEND_MS = 1_000;

interface Waiting {
  held: Set<HeldRequest>;
  timers: Map<HeldRequest, NodeJS.Timeout>;
  resend: NodeJS.Timeout;
}

export class ActivationGate {
  private readonly waiting = new Map<string, Waiting>();
  private readonly timeoutMs: number;
  private readonly resendMs: number;
  /** Activations asked for, for tests and metrics. */
  requests = 0;

  constructor(private readonly opts: ActivationGateOptions) {
    this.timeoutMs = opts.timeoutMs ?? DEFAULT_ACTIVATION_TIMEOUT_MS;
    this.resendMs = opts.resendMs ?? DEFAULT_ACTIVATION_RESEND_MS;
  }

  /**
   * Holds `r` until the deployment can serve it. `maxHeld` bounds the queue (then `r` is
   * rejected with `full` at once); `budgetMs` caps the wait below the gate's timeout.
   */
  hold(deploymentId: string, r: HeldRequest, maxHeld: number, budgetMs?: number): void {
    let w = this.waiting.get(deploymentId);
    if (w && w.held.size >= maxHeld) {
      r.reject('full');
      return;
    }
    if (!w) {
      const resend = setInterval(() => this.ask(deploymentId), this.resendMs);
      resend.unref();
      w = { held: new Set(), timers: new Map(), resend };
      this.waiting.set(deploymentId, w);
      this.ask(deploymentId);
    }
    const waitMs = Math.max(0, Math.min(this.timeoutMs, budgetMs ?? this.timeoutMs));
    const timer = setTimeout(() => {
      if (this.drop(deploymentId, r)) r.reject('timeout');
    }, waitMs);
    w.held.add(r);
    w.timers.set(r, timer);
  }

  /** The client went away: forget it. Returns whether it was held. */
  cancel(deploymentId: string, r: HeldRequest): boolean {
    return this.drop(deploymentId, r);
  }

  /** Requests held for the deployment now. */
  heldCount(deploymentId: string): number {
    return this.waiting.get(deploymentId)?.held.size ?? 0;
  }

  /** Deployment ids with held requests. */
  deployments(): string[] {
    return [...this.waiting.keys()];
  }

  /** The deployment can serve: resume every request held for it, oldest first. */
  release(deploymentId: string): void {
    const w = this.waiting.get(deploymentId);
    if (!w) return;
    this.waiting.delete(deploymentId);
    clearInterval(w.resend);
    for (const t of w.timers.values()) clearTimeout(t);
    for (const r of w.held) r.resume();
  }

  /** The proxy is closing: every held request is rejected. */
  close(): void {
    for (const [id, w] of [...this.waiting]) {
      this.waiting.delete(id);
      clearInterval(w.resend);
      for (const t of w.timers.values()) clearTimeout(t);
      for (const r of w.held) r.reject('closing');
    }
  }

  private drop(deploymentId: string, r: HeldRequest): boolean {
    const w = this.waiting.get(deploymentId);
    if (!w?.held.delete(r)) return false;
    clearTimeout(w.timers.get(r));
    w.timers.delete(r);
    if (w.held.size === 0) {
      this.waiting.delete(deploymentId);
      clearInterval(w.resend);
    }
    return true;
  }

  private ask(deploymentId: string): void {
    this.requests++;
    try {
      const p = this.opts.request(deploymentId);
      if (p instanceof Promise) {
        p.catch((err: unknown) =>
          this.opts.warn?.({ err, deploymentId }, 'activation request failed'),
        );
      }
    } catch (err) {
      this.opts.warn?.({ err, deploymentId }, 'activation request failed');
    }
  }
}
