/**
 * Scale to zero across processes: a proxy in its own process (`serve --role proxy`) that holds
 * a request for a deployment at zero publishes the deployment id on the Redis channel
 * `<prefix>activate` (again every second while requests wait, see src/proxy/activation.ts);
 * the coordinator listens here and activates the deployment. Activation is idempotent (only a
 * deployment at zero is scaled, to one, and concurrent asks share one scale), so any number of
 * proxies and repeats start one replica.
 */
import { Redis } from 'ioredis';
import type { RuntimeLogger } from './runtime-deps.ts';

/** The pub/sub channel of activation requests. */
export function activationChannel(keyPrefix: string): string {
  return `${keyPrefix}activate`;
}

/** Deployment ids are this shape (src/domain/ids.ts); anything else on the channel is ignored. */
const ID_PATTERN = /^[A-Za-z0-9_-]{1,64}$/;

export interface ActivationListener {
  close(): Promise<void>;
}

export async function startActivationListener(opts: {
  url: string;
  keyPrefix: string;
  activate: (deploymentId: string) => Promise<unknown>;
  logger?: RuntimeLogger | undefined;
}): Promise<ActivationListener> {
  const sub = new Redis(opts.url, {
    maxRetriesPerRequest: 2,
    connectionName: 'flotilla-activation-listener',
  });
  // ioredis resubscribes after a reconnect; errors are only logged once per outage.
  let down = false;
  sub.on('error', (err: unknown) => {
    if (down) return;
    down = true;
    opts.logger?.warn({ err }, 'Redis (activation listener) unreachable; retrying');
  });
  sub.on('ready', () => {
    down = false;
  });
  const channel = activationChannel(opts.keyPrefix);
  sub.on('message', (ch: string, message: string) => {
    if (ch !== channel || !ID_PATTERN.test(message)) return;
    opts.activate(message).catch((err: unknown) => {
      opts.logger?.warn({ err, deployment: message }, 'activation failed');
    });
  });
  await sub.subscribe(channel);
  return {
    async close() {
      sub.disconnect();
    },
  };
}

/** The proxy's side: asks the coordinator to activate a deployment. */
export function publishActivation(
  redis: Pick<Redis, 'publish'>,
  keyPrefix: string,
  deploymentId: string,
): Promise<number> {
  return redis.publish(activationChannel(keyPrefix), deploymentId);
}
