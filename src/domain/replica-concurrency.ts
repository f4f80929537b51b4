/**
 * How many requests one replica of a runtime variant takes at once: the batch limit its
 * server is launched with. Read from the session's argv (or environment) when the command
 * sets it, else the runtime's documented default. The proxy's admission control uses it as
 * the per-replica default (src/proxy/admission.ts); README "Admission" lists the sources.
 */
import type { SessionSpec } from './session.ts';

/** The per-replica concurrency a session's server is launched with, and where it came from. */
export interface ReplicaConcurrency {
  /** Requests one replica runs at once (the fixed-mode default per replica). */
  max_concurrent_requests: number;
  /** Upper bound for the adaptive limit per replica. */
  max_limit: number;
  /** `flag --x`, `env X`, `default` or `conservative` (no runtime limit known). */
  source: string;
}

interface VariantLimit {
  /** Flags that set the limit, in the runtime's own spelling. */
  flags: string[];
  /** Environment variables the runtime also reads for it. */
  env: string[];
  /** What the runtime uses when it is not set. */
  fallback: number;
  /** Ceiling of the adaptive limit when the command does not set the flag. */
  adaptiveMax: number;
  /** `default`: the runtime's documented default; `assumed`: Flotilla's choice (no fixed default). */
  kind: 'default' | 'assumed';
}

/**
 * Per variant. Sources (README "Admission"):
 * - vllm `--max-num-seqs`, 256: https://docs.vllm.ai/en/latest/configuration/engine_args.html
 * - huggingface-tgi `--max-concurrent-requests` / MAX_CONCURRENT_REQUESTS, 128:
 *   https://huggingface.co/docs/text-generation-inference/reference/launcher
 * - sglang `--max-running-requests`: no fixed default (sized from KV-cache memory), 128 assumed:
 *   https://docs.sglang.io/docs/advanced_features/server_arguments.md
 * - modular-max `--max-batch-size`: none fixed in the docs, 32 assumed:
 *   https://docs.modular.com/max/cli/serve
 * - nim: runs vLLM or TensorRT-LLM inside; vLLM's 256 assumed, `--max-num-seqs` read if given.
 * - cmd / custom: unknown server, 8 (conservative), adaptive up to 128.
 */
const VARIANT_LIMITS: Record<string, VariantLimit> = {
  vllm: { flags: ['--max-num-seqs'], env: [], fallback: 256, adaptiveMax: 256, kind: 'default' },
  sglang: {
    flags: ['--max-running-requests'],
    env: [],
    fallback: 128,
    adaptiveMax: 128,
    kind: 'assumed',
  },
  'huggingface-tgi': {
    flags: ['--max-concurrent-requests'],
    env: ['MAX_CONCURRENT_REQUESTS'],
    fallback: 128,
    adaptiveMax: 128,
    kind: 'default',
  },
  nim: { flags: ['--max-num-seqs'], env: [], fallback: 256, adaptiveMax: 256, kind: 'assumed' },
  'modular-max': {
    flags: ['--max-batch-size'],
    env: [],
    fallback: 32,
    adaptiveMax: 32,
    kind: 'assumed',
  },
};

/** Unknown servers (cmd, custom, anything else): conservative fixed limit, adaptive room above. */
export const CONSERVATIVE_CONCURRENCY = 8;
export const CONSERVATIVE_ADAPTIVE_MAX = 128;
const ALL_FLAGS = [...new Set(Object.values(VARIANT_LIMITS).flatMap((v) => v.flags))];
const MAX_LIMIT = 100_000;

function positiveInt(s: string | undefined): number | undefined {
  if (s === undefined || !/^\d+$/.test(s.trim())) return undefined;
  const n = Number(s.trim());
  return n >= 1 && n <= MAX_LIMIT ? n : undefined;
}

/** The value of `flag` in argv (`--flag N` or `--flag=N`); the last one wins, as in argparse. */
export function flagValue(argv: readonly string[], flag: string): number | undefined {
  let found: number | undefined;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (typeof a !== 'string') continue;
    if (a === flag) {
      const v = positiveInt(argv[i + 1]);
      if (v !== undefined) found = v;
    } else if (a.startsWith(`${flag}=`)) {
      const v = positiveInt(a.slice(flag.length + 1));
      if (v !== undefined) found = v;
    }
  }
  return found;
}

/**
 * The concurrency one replica of `session` takes. The command's flag (any known runtime's
 * flag for `cmd`, which may run one of them) wins over the environment, which wins over the
 * variant's default.
 */
export function replicaConcurrencyOf(
  session: Pick<SessionSpec, 'runtime_variant' | 'command' | 'environ'>,
): ReplicaConcurrency {
  const v = VARIANT_LIMITS[session.runtime_variant];
  // Sessions stored by older builds may lack fields: read what is there.
  const argv = Array.isArray(session.command) ? session.command : [];
  const environ = session.environ ?? {};
  for (const flag of v ? v.flags : ALL_FLAGS) {
    const n = flagValue(argv, flag);
    if (n !== undefined)
      return { max_concurrent_requests: n, max_limit: n, source: `flag ${flag}` };
  }
  if (v) {
    for (const name of v.env) {
      const n = positiveInt(environ[name]);
      if (n !== undefined)
        return { max_concurrent_requests: n, max_limit: n, source: `env ${name}` };
    }
    return { max_concurrent_requests: v.fallback, max_limit: v.adaptiveMax, source: v.kind };
  }
  return {
    max_concurrent_requests: CONSERVATIVE_CONCURRENCY,
    max_limit: CONSERVATIVE_ADAPTIVE_MAX,
    source: 'conservative',
  };
}

/** The tightest of several (a deployment mid-rollout runs two revisions): the smaller limits. */
export function tightest(list: readonly ReplicaConcurrency[]): ReplicaConcurrency | undefined {
  let best: ReplicaConcurrency | undefined;
  for (const c of list) {
    if (!best || c.max_concurrent_requests < best.max_concurrent_requests) best = c;
  }
  return best;
}
