/**
 * `flotilla logs NAME [--replica ID] [--tail BYTES] [--follow]`: the tail of the replicas'
 * output. --follow polls once a second and prints what is new until interrupted.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { COMMON_HELP, enc, intFlag, parseCommand, usageError, withClient } from '../args.ts';

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

export async function run(argv: string[]): Promise<number> {
  const parsed = parseCommand('logs', argv, {
    replica: { type: 'string' },
    tail: { type: 'string' },
    follow: { type: 'boolean', short: 'f' },
    previous: { type: 'boolean', short: 'p' },
  });
  if (typeof parsed === 'number') return parsed;
  const { values, positionals } = parsed;
  if (values.help) {
    console.log(HELP);
    return 0;
  }
  if (positionals.length !== 1) return usageError('logs', 'give exactly one deployment name or id');
  const tail = intFlag('--tail', values.tail, { min: 1, max: 8 * 1024 * 1024 });
  if (typeof tail === 'string') return usageError('logs', tail);
  const q = new URLSearchParams();
  if (values.replica) q.set('replica', values.replica);
  if (values.previous) q.set('previous', 'true');
  if (tail !== undefined) q.set('tail_bytes', String(tail));
  const path = `/v1/deployments/${enc(positionals[0]!)}/logs${q.size ? `?${q}` : ''}`;
  return withClient('logs', values, async (client) => {
    let shown = await client.text(path);
    process.stdout.write(shown.endsWith('\n') || shown === '' ? shown : `${shown}\n`);
    if (!values.follow) return 0;
    let stop = false;
    const onSignal = () => {
      stop = true;
    };
    process.once('SIGINT', onSignal);
    process.once('SIGTERM', onSignal);
    try {
      while (!stop) {
        await sleep(1000);
        if (stop) break;
        const next = await client.text(path);
        const added = newOutput(shown, next);
        if (added) process.stdout.write(added);
        shown = next;
      }
    } finally {
      process.off('SIGINT', onSignal);
      process.off('SIGTERM', onSignal);
    }
    return 0;
  });
}
