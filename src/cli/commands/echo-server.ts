/**
 * `flotilla echo-server`: runs the OpenAI-compatible echo model server until SIGTERM/SIGINT.
 * Flags win over environment variables, which win over defaults.
 */
import { hostForUrl } from '../../domain/host.ts';
import { startEchoServer } from '../../echo/server.ts';
import { parseOrExit } from '../flags.ts';

const HELP = `usage: flotilla echo-server [options]

An OpenAI-compatible echo model server for demos and tests.

options:
  --port <n>               port to listen on; 0 picks a free one (env PORT, default 8000)
  --host <addr>            address to listen on (env HOST, default 127.0.0.1)
  --startup-delay-ms <n>   /health answers 503 this long after start (env ECHO_STARTUP_DELAY_MS)
  --token-latency-ms <n>   delay per generated token (env ECHO_TOKEN_LATENCY_MS)
  --cpu-ms-per-request <n> CPU time spun before each non-streaming reply
                           (env ECHO_CPU_MS_PER_REQUEST, default 0)
  --model <id>             model id served (env ECHO_MODEL, default echo)
  --slow-above <n>         past n replies at once, each token takes (n_now/n)^2 times longer
                           (a replica that degrades past a concurrency level; env ECHO_SLOW_ABOVE)
  -h, --help               show this help

fault injection (HTTP):
  POST /admin/health {"ok": false|true}   make /health fail or pass
  POST /admin/crash                       exit at once with status 1
  POST /admin/hang                        stop answering every later request
  POST /admin/burn {"seconds": N, "cores": K}
                                          spin K child processes (default 1) for N seconds
                                          (0 stops them): CPU load for autoscaling tests`;

function nonNegativeInt(name: string, value: string | undefined, fallback: number): number {
  if (value === undefined || value === '') return fallback;
  const n = Number(value);
  if (!Number.isInteger(n) || n < 0)
    throw new Error(`${name}: expected an integer >= 0, got "${value}"`);
  return n;
}

export async function run(argv: string[], env: NodeJS.ProcessEnv = process.env): Promise<number> {
  const parsed = parseOrExit(
    'echo-server',
    HELP,
    argv,
    {
      port: { type: 'string' },
      host: { type: 'string' },
      'startup-delay-ms': { type: 'string' },
      'token-latency-ms': { type: 'string' },
      'cpu-ms-per-request': { type: 'string' },
      model: { type: 'string' },
      'slow-above': { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
    { allowPositionals: false },
  );
  if (typeof parsed === 'number') return parsed;
  const values: Record<string, string | boolean | undefined> = parsed.values;
  const str = (v: string | boolean | undefined) => (typeof v === 'string' ? v : undefined);
  let opts: Parameters<typeof startEchoServer>[0];
  try {
    opts = {
      port: nonNegativeInt('--port', str(values.port) ?? env.PORT, 8000),
      host: str(values.host) ?? env.HOST ?? '127.0.0.1',
      startupDelayMs: nonNegativeInt(
        '--startup-delay-ms',
        str(values['startup-delay-ms']) ?? env.ECHO_STARTUP_DELAY_MS,
        0,
      ),
      tokenLatencyMs: nonNegativeInt(
        '--token-latency-ms',
        str(values['token-latency-ms']) ?? env.ECHO_TOKEN_LATENCY_MS,
        0,
      ),
      cpuMsPerRequest: nonNegativeInt(
        '--cpu-ms-per-request',
        str(values['cpu-ms-per-request']) ?? env.ECHO_CPU_MS_PER_REQUEST,
        0,
      ),
      model: str(values.model) ?? env.ECHO_MODEL ?? 'echo',
      slowAbove: nonNegativeInt(
        '--slow-above',
        str(values['slow-above']) ?? env.ECHO_SLOW_ABOVE,
        0,
      ),
      replicaId: env.FLOTILLA_REPLICA_ID || undefined,
    };
  } catch (err) {
    console.error(`flotilla echo-server: ${(err as Error).message}`);
    return 2;
  }
  if (opts.port > 65535) {
    console.error('flotilla echo-server: --port: expected at most 65535');
    return 2;
  }

  const server = await startEchoServer(opts);
  const host = opts.host ?? '127.0.0.1';
  const shown = hostForUrl(host);
  console.log(
    `echo-server listening on http://${shown}:${server.port} (pid ${process.pid}, model ${opts.model})`,
  );

  return new Promise<number>((resolve) => {
    const shutdown = (signal: NodeJS.Signals) => {
      process.off('SIGTERM', shutdown);
      process.off('SIGINT', shutdown);
      console.log(`echo-server: ${signal}, shutting down`);
      server.close().then(
        () => resolve(0),
        () => resolve(1),
      );
    };
    process.on('SIGTERM', shutdown);
    process.on('SIGINT', shutdown);
  });
}
