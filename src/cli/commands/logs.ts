/**
 * `flotilla logs NAME [--replica ID] [--tail BYTES] [--follow]`: the tail of the replicas'
 * output. --follow polls once a second and prints what is new until interrupted, following
 * each replica's log on its own (a line of one replica never re-prints another's).
 */
import { setTimeout as sleep } from 'node:timers/promises';
import type { DeploymentView } from '../../index.ts';
import { COMMON_HELP, enc, intFlag, parseCommand, usageError, withClient } from '../args.ts';
import { type ApiClient, ApiError } from '../http-client.ts';

const HELP = `usage: flotilla logs <name or id> [options]

Prints the tail of the combined stdout/stderr of a deployment's replicas (every line prefixed
with its replica id when there are several).

options:
  --replica <id>   one replica only
  -p, --previous   the output of replicas that have exited (the last few per deployment)
  --tail <bytes>   how much of each replica's log (default 65536)
  -f, --follow     keep printing new output (polls every second) until Ctrl-C

${COMMON_HELP}`;

/** What `next` adds after `prev` (both tails of one growing log); all of `next` if unrelated. */
export function newOutput(prev: string, next: string): string {
  if (prev === '') return next;
  if (next.startsWith(prev)) return next.slice(prev.length);
  // The window moved: the longest prefix of `next` that is a suffix of `prev` was shown
  // already. Prefix function (KMP) over next + NUL + prev, linear in their length.
  const s = `${next}\u0000${prev}`;
  const pi = new Int32Array(s.length);
  for (let i = 1; i < s.length; i++) {
    let k = pi[i - 1]!;
    while (k > 0 && s[i] !== s[k]) k = pi[k - 1]!;
    if (s[i] === s[k]) k++;
    pi[i] = k;
  }
  return next.slice(pi[s.length - 1]!);
}

/**
 * Follows several replicas' logs, each on its own: `poll` fetches every replica's tail and
 * returns only what each one added since the last poll, as whole lines prefixed `[replica id]`
 * when `prefix` is on (a partial last line waits for its newline). A replica whose log cannot
 * be read this time (it just left) is skipped and keeps what was shown of it.
 */
export class LogFollower {
  private readonly shown = new Map<string, string>();
  private readonly partial = new Map<string, string>();

  constructor(
    private readonly fetchLog: (replicaId: string) => Promise<string | null>,
    public prefix: boolean,
  ) {}

  async poll(replicaIds: readonly string[]): Promise<string> {
    const texts = await Promise.all(replicaIds.map((id) => this.fetchLog(id)));
    let out = '';
    replicaIds.forEach((id, i) => {
      const next = texts[i];
      if (next === null || next === undefined) return;
      const added = newOutput(this.shown.get(id) ?? '', next);
      this.shown.set(id, next);
      if (!this.prefix) {
        out += added;
        return;
      }
      const lines = `${this.partial.get(id) ?? ''}${added}`.split('\n');
      this.partial.set(id, lines.pop() ?? '');
      for (const line of lines) if (line !== '') out += `[${id}] ${line}\n`;
    });
    return out;
  }
}

/** The replicas whose logs `--follow` reads: all but TERMINATED ones, or the one asked for. */
async function replicasOf(client: ApiClient, name: string, only: string | undefined) {
  if (only) return [only];
  const v = await client.get<DeploymentView>(`/v1/deployments/${enc(name)}`);
  return v.replicas.filter((r) => r.state !== 'TERMINATED').map((r) => r.id);
}

async function follow(
  client: ApiClient,
  name: string,
  only: string | undefined,
  tail: number | undefined,
  isStopped: () => boolean,
): Promise<void> {
  const fetchLog = async (id: string) => {
    const q = new URLSearchParams({ replica: id });
    if (tail !== undefined) q.set('tail_bytes', String(tail));
    try {
      return await client.text(`/v1/deployments/${enc(name)}/logs?${q}`);
    } catch (err) {
      // The replica left between listing and reading: nothing new from it this time.
      if (err instanceof ApiError && err.code === 'not_found' && !only) return null;
      throw err;
    }
  };
  let ids = await replicasOf(client, name, only);
  const follower = new LogFollower(fetchLog, !only && ids.length > 1);
  for (;;) {
    const added = await follower.poll(ids);
    if (added) process.stdout.write(added);
    await sleep(1000);
    if (isStopped()) return;
    ids = await replicasOf(client, name, only);
    // Several replicas from now on: prefix lines so they can be told apart.
    if (!only && ids.length > 1) follower.prefix = true;
  }
}

export async function run(argv: string[]): Promise<number> {
  const parsed = parseCommand('logs', HELP, argv, {
    replica: { type: 'string' },
    tail: { type: 'string' },
    follow: { type: 'boolean', short: 'f' },
    previous: { type: 'boolean', short: 'p' },
  });
  if (typeof parsed === 'number') return parsed;
  const { values, positionals } = parsed;
  if (positionals.length !== 1) return usageError('logs', 'give exactly one deployment name or id');
  const tail = intFlag('--tail', values.tail, { min: 1, max: 8 * 1024 * 1024 });
  if (typeof tail === 'string') return usageError('logs', tail);
  const q = new URLSearchParams();
  if (values.replica) q.set('replica', values.replica);
  if (values.previous) q.set('previous', 'true');
  if (tail !== undefined) q.set('tail_bytes', String(tail));
  const path = `/v1/deployments/${enc(positionals[0]!)}/logs${q.size ? `?${q}` : ''}`;
  return withClient('logs', values, async (client) => {
    if (!values.follow) {
      const shown = await client.text(path);
      process.stdout.write(shown.endsWith('\n') || shown === '' ? shown : `${shown}\n`);
      return 0;
    }
    let stop = false;
    const onSignal = () => {
      stop = true;
    };
    process.once('SIGINT', onSignal);
    process.once('SIGTERM', onSignal);
    try {
      await follow(client, positionals[0]!, values.replica, tail, () => stop);
    } finally {
      process.off('SIGINT', onSignal);
      process.off('SIGTERM', onSignal);
    }
    return 0;
  });
}
