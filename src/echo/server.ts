/**
 * The echo model server: an OpenAI-compatible HTTP server whose "model" replies with the words
 * of the last user message, one token per word. Demos and tests deploy it as a replica; its
 * knobs and fault injection produce every replica and route state on purpose.
 *
 *   GET  /health               503 until startupDelayMs has passed, then 200 (unless failed)
 *   GET  /v1/models            the model, with this process's pid and replica id
 *   POST /v1/chat/completions  plain or `stream: true` (SSE, one chunk per token, `[DONE]`)
 *   POST /v1/completions       same, legacy completions
 *   POST /admin/health         {"ok": false} makes /health answer 503; {"ok": true} undoes it
 *   POST /admin/crash          exits at once (status 1)
 *   POST /admin/hang           every later request, /health included, is never answered
 *   POST /admin/burn           {"seconds": N, "cores": K} spins K child processes (default 1)
 *                              for N seconds (0 stops them): CPU load for autoscaling tests
 *   POST /admin/delay          {"ms": N}: every later /v1/ request waits N ms more before its
 *                              answer (0 undoes it): a slow replica whose /health stays fast
 *   POST /admin/errors         {"status": S}: every later /v1/ request answers S (500..599) in
 *                              the OpenAI error shape; {"status": 0} undoes it. /health is spared
 *   POST /admin/reset          {"on": true}: every later /v1/ request's connection is reset
 *                              (TCP RST, no answer); {"on": false} undoes it. /health is spared
 *
 * Every response carries `x-echo-pid` (and `x-echo-replica` when a replica id is set). Plain
 * node:http: the server should never be the bottleneck of a proxy benchmark.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import {
  type CompletionMeta,
  chatChunk,
  chatCompletion,
  errorBody,
  lastUserText,
  promptText,
  promptTokenCount,
  replyTokens,
  textCompletion,
  usage,
  usageChunk,
  words,
} from './openai-format.ts';

export interface EchoServerOptions {
  /** 0 picks a free port. */
  port: number;
  /** Default `127.0.0.1`. */
  host?: string;
  /** /health answers 503 for this long after listening starts. Default 0. */
  startupDelayMs?: number;
  /** Delay before each token (streaming) or tokens x delay before a whole reply. Default 0. */
  tokenLatencyMs?: number;
  /**
   * CPU time spun (busy loop, on the event loop) before each non-streaming reply, after its
   * delay: per-request CPU work for `cpu` autoscaling benchmarks. Default 0.
   */
  cpuMsPerRequest?: number;
  /** Model id served. Default `echo`. */
  model?: string;
  /**
   * A replica that slows down past a concurrency level: with more than this many replies
   * being generated at once, every token's delay is multiplied by (generating / slowAbove)²
   * (a batch that no longer fits: past the knee, throughput falls). 0 or absent: never.
   */
  slowAbove?: number;
  /** Reported in /v1/models and `x-echo-replica` (the CLI passes FLOTILLA_REPLICA_ID). */
  replicaId?: string;
  /** What `POST /admin/crash` does. Default `process.exit(1)`; tests in-process replace it. */
  onCrash?: () => void;
  /**
   * What `POST /admin/burn` does. Default: spins `cores` child processes (in this process's
   * group, so a backend sampling the group counts them) for `seconds`; 0 stops them. Tests
   * in-process replace it (the fake backend accounts the CPU time instead of spending it).
   */
  onBurn?: (seconds: number, cores: number) => void;
}

export interface EchoServer {
  port: number;
  close(): Promise<void>;
}

const MAX_BODY_BYTES = 1024 * 1024;

class BadRequest extends Error {}

function readBody(req: IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size > MAX_BODY_BYTES) {
        reject(new BadRequest(`request body over ${MAX_BODY_BYTES} bytes`));
        req.destroy();
        return;
      }
      chunks.push(chunk);
    });
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    req.on('error', reject);
  });
}

async function readJson(req: IncomingMessage): Promise<Record<string, unknown>> {
  const text = await readBody(req);
  if (text.trim() === '') return {};
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    throw new BadRequest('request body is not valid JSON');
  }
  if (!parsed || typeof parsed !== 'object' || Array.isArray(parsed)) {
    throw new BadRequest('request body must be a JSON object');
  }
  return parsed as Record<string, unknown>;
}

const MAX_BURN_SECONDS = 3600;
const MAX_DELAY_MS = 3_600_000;
const MAX_BURN_CORES = 64;

/** One child per core, each spinning until the deadline, then exiting on its own. */
function spinChildren(seconds: number, cores: number): ChildProcess[] {
  const deadline = Date.now() + seconds * 1000;
  const code = `const end = ${deadline}; while (Date.now() < end) {}`;
  return Array.from({ length: cores }, () => {
    const child = spawn(process.execPath, ['-e', code], { stdio: 'ignore' });
    child.on('error', () => {});
    return child;
  });
}

function parseBurn(body: Record<string, unknown>): { seconds: number; cores: number } {
  const { seconds, cores = 1 } = body;
  if (typeof seconds !== 'number' || !(seconds >= 0 && seconds <= MAX_BURN_SECONDS)) {
    throw new BadRequest(`seconds: expected a number from 0 to ${MAX_BURN_SECONDS}`);
  }
  if (
    typeof cores !== 'number' ||
    !Number.isInteger(cores) ||
    cores < 1 ||
    cores > MAX_BURN_CORES
  ) {
    throw new BadRequest(`cores: expected a whole number from 1 to ${MAX_BURN_CORES}`);
  }
  return { seconds, cores };
}

function sendJson(res: ServerResponse, status: number, body: unknown): void {
  const payload = JSON.stringify(body);
  res.writeHead(status, {
    'content-type': 'application/json',
    'content-length': Buffer.byteLength(payload),
  });
  res.end(payload);
}

/** Whether a streaming request asked for a last chunk with the usage (`stream_options`). */
function includesUsage(body: Record<string, unknown>): boolean {
  return (body.stream_options as { include_usage?: unknown } | undefined)?.include_usage === true;
}

let idCounter = 0;
function completionId(prefix: string): string {
  idCounter = (idCounter + 1) % 1e9;
  return `${prefix}-${process.pid.toString(36)}${Date.now().toString(36)}${idCounter.toString(36)}`;
}

export async function startEchoServer(opts: EchoServerOptions): Promise<EchoServer> {
  const model = opts.model ?? 'echo';
  const tokenLatencyMs = Math.max(0, opts.tokenLatencyMs ?? 0);
  const slowAbove = Math.max(0, Math.floor(opts.slowAbove ?? 0));
  /** Replies being generated now (for slowAbove). */
  let generating = 0;
  const tokenDelay = () =>
    slowAbove > 0 && generating > slowAbove
      ? tokenLatencyMs * (generating / slowAbove) ** 2
      : tokenLatencyMs;

  const cpuMsPerRequest = Math.max(0, opts.cpuMsPerRequest ?? 0);
  const spin = () => {
    if (cpuMsPerRequest <= 0) return;
    const end = performance.now() + cpuMsPerRequest;
    while (performance.now() < end) {}
  };
  const startupDelayMs = Math.max(0, opts.startupDelayMs ?? 0);
  const onCrash = opts.onCrash ?? (() => process.exit(1));
  let burners: ChildProcess[] = [];
  const stopBurning = () => {
    for (const child of burners) if (child.exitCode === null) child.kill('SIGKILL');
    burners = [];
  };
  const onBurn =
    opts.onBurn ??
    ((seconds: number, cores: number) => {
      stopBurning();
      if (seconds > 0) burners = spinChildren(seconds, cores);
    });
  const pid = process.pid;
  const createdSec = Math.floor(Date.now() / 1000);

  let readyAt = Number.POSITIVE_INFINITY;
  let healthOk = true;
  let hung = false;
  /** Fault toggles for /v1/ requests (POST /admin/delay, /admin/errors, /admin/reset). */
  let extraDelayMs = 0;
  let errorStatus = 0;
  let resetting = false;
  let closing = false;
  // Sleepers and hung streams wake up when the server closes, so close() never waits on them.
  const wakeOnClose = new Set<() => void>();

  function sleep(ms: number): Promise<void> {
    if (ms <= 0 || closing) return Promise.resolve();
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        wakeOnClose.delete(done);
        resolve();
      };
      const timer = setTimeout(done, ms);
      wakeOnClose.add(done);
    });
  }

  function untilClosed(): Promise<void> {
    if (closing) return Promise.resolve();
    return new Promise((resolve) => wakeOnClose.add(resolve));
  }

  function modelsBody() {
    const identity = { pid, replica_id: opts.replicaId ?? null };
    return {
      object: 'list',
      data: [
        { id: model, object: 'model', created: createdSec, owned_by: 'flotilla-echo', ...identity },
      ],
      ...identity,
    };
  }

  async function streamSse(
    res: ServerResponse,
    tokens: string[],
    chunkFor: (token: string, index: number) => unknown,
    tail: unknown[],
  ): Promise<void> {
    res.writeHead(200, {
      'content-type': 'text/event-stream; charset=utf-8',
      'cache-control': 'no-cache',
      connection: 'keep-alive',
    });
    res.flushHeaders();
    let gone = false;
    res.on('close', () => {
      gone = true;
    });
    for (let i = 0; i < tokens.length; i++) {
      await sleep(tokenDelay());
      if (hung) return untilClosed();
      if (gone || closing) return;
      res.write(`data: ${JSON.stringify(chunkFor(tokens[i]!, i))}\n\n`);
    }
    if (hung) return untilClosed();
    if (gone || closing) return;
    for (const chunk of tail) res.write(`data: ${JSON.stringify(chunk)}\n\n`);
    res.end('data: [DONE]\n\n');
  }

  function completionMeta(idPrefix: string): CompletionMeta {
    return { id: completionId(idPrefix), created: Math.floor(Date.now() / 1000), model };
  }

  /** A non-streaming answer: it takes the tokens' generation time, then `body` (unless hung). */
  async function reply(res: ServerResponse, nTokens: number, body: unknown): Promise<void> {
    await sleep(tokenDelay() * nTokens);
    if (hung) return untilClosed();
    spin();
    sendJson(res, 200, body);
  }

  async function chatCompletions(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const body = await readJson(req);
    if (!Array.isArray(body.messages)) throw new BadRequest('messages: expected an array');
    const { tokens, truncated } = replyTokens(
      lastUserText(body.messages),
      body.max_completion_tokens ?? body.max_tokens,
    );
    const finish = truncated ? 'length' : 'stop';
    const u = usage(promptTokenCount(body.messages), tokens.length);
    const meta = completionMeta('chatcmpl');
    if (body.stream === true) {
      const tail: unknown[] = [chatChunk(meta, {}, finish)];
      if (includesUsage(body)) tail.push(usageChunk(meta, 'chat.completion.chunk', u));
      return streamSse(
        res,
        tokens,
        (token, i) =>
          chatChunk(
            meta,
            i === 0 ? { role: 'assistant', content: token } : { content: token },
            null,
          ),
        tail,
      );
    }
    return reply(res, tokens.length, chatCompletion(meta, tokens.join(''), finish, u));
  }

  async function completions(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const body = await readJson(req);
    if (body.prompt === undefined) throw new BadRequest('prompt: required');
    const text = promptText(body.prompt);
    const { tokens, truncated } = replyTokens(text, body.max_tokens);
    const finish = truncated ? 'length' : 'stop';
    const u = usage(words(text).length, tokens.length);
    const meta = completionMeta('cmpl');
    if (body.stream === true) {
      const tail: unknown[] = [textCompletion(meta, '', finish)];
      if (includesUsage(body)) tail.push(usageChunk(meta, 'text_completion', u));
      return streamSse(res, tokens, (token) => textCompletion(meta, token, null), tail);
    }
    return reply(res, tokens.length, textCompletion(meta, tokens.join(''), finish, u));
  }

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    // A hung server keeps the socket open and says nothing, like a wedged model server.
    if (hung) return;
    res.setHeader('x-echo-pid', String(pid));
    if (opts.replicaId) res.setHeader('x-echo-replica', opts.replicaId);
    const url = req.url ?? '/';
    const q = url.indexOf('?');
    const path = q < 0 ? url : url.slice(0, q);
    const route = `${req.method} ${path}`;
    if (path.startsWith('/v1/')) {
      if (resetting) {
        // An abrupt close, as a crashing server or a middlebox does: RST, no response.
        req.socket.resetAndDestroy();
        return;
      }
      if (extraDelayMs > 0) {
        await sleep(extraDelayMs);
        if (hung) return untilClosed();
      }
      if (errorStatus > 0) {
        return sendJson(
          res,
          errorStatus,
          errorBody(`injected failure (POST /admin/errors)`, 'server_error'),
        );
      }
    }
    switch (route) {
      case 'GET /health':
      case 'HEAD /health':
        if (Date.now() < readyAt) return sendJson(res, 503, { status: 'starting' });
        if (!healthOk) return sendJson(res, 503, { status: 'unhealthy' });
        return sendJson(res, 200, { status: 'ok' });
      case 'GET /v1/models':
        return sendJson(res, 200, modelsBody());
      case 'POST /v1/chat/completions':
      case 'POST /v1/completions':
        generating++;
        try {
          return await (route === 'POST /v1/completions' ? completions : chatCompletions)(req, res);
        } finally {
          generating--;
        }
      case 'POST /admin/health': {
        const body = await readJson(req);
        if (typeof body.ok !== 'boolean') throw new BadRequest('ok: expected a boolean');
        healthOk = body.ok;
        return sendJson(res, 200, { ok: healthOk });
      }
      case 'POST /admin/crash':
        onCrash();
        // In-process (tests) the crash is simulated by dropping the connection.
        res.destroy();
        return;
      case 'POST /admin/burn': {
        const { seconds, cores } = parseBurn(await readJson(req));
        onBurn(seconds, cores);
        return sendJson(res, 200, { seconds, cores: seconds > 0 ? cores : 0 });
      }
      case 'POST /admin/delay': {
        const { ms } = await readJson(req);
        if (typeof ms !== 'number' || !(ms >= 0 && ms <= MAX_DELAY_MS))
          throw new BadRequest(`ms: expected a number from 0 to ${MAX_DELAY_MS}`);
        extraDelayMs = ms;
        return sendJson(res, 200, { ms });
      }
      case 'POST /admin/errors': {
        const { status } = await readJson(req);
        if (
          typeof status !== 'number' ||
          !Number.isInteger(status) ||
          !(status === 0 || (status >= 500 && status <= 599))
        )
          throw new BadRequest('status: expected 0 (off) or a whole number from 500 to 599');
        errorStatus = status;
        return sendJson(res, 200, { status });
      }
      case 'POST /admin/reset': {
        const { on } = await readJson(req);
        if (typeof on !== 'boolean') throw new BadRequest('on: expected a boolean');
        resetting = on;
        return sendJson(res, 200, { on });
      }
      case 'POST /admin/hang':
        hung = true;
        return sendJson(res, 200, { hung: true });
      default:
        return sendJson(
          res,
          404,
          errorBody(`no route ${route}`, 'invalid_request_error', 'not_found'),
        );
    }
  }

  const server = http.createServer((req, res) => {
    handle(req, res).catch((err: unknown) => {
      if (res.headersSent) {
        res.destroy();
        return;
      }
      if (err instanceof BadRequest) {
        sendJson(res, 400, errorBody(err.message, 'invalid_request_error'));
      } else {
        sendJson(res, 500, errorBody(String(err), 'server_error'));
      }
    });
  });
  // Longer than any client's idle keep-alive, so a proxy never reuses a socket we just closed.
  server.keepAliveTimeout = 65_000;

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen({ port: opts.port, host: opts.host ?? '127.0.0.1' }, () => {
      server.off('error', reject);
      resolve();
    });
  });
  readyAt = Date.now() + startupDelayMs;
  const port = (server.address() as AddressInfo).port;

  return {
    port,
    close: async () => {
      if (closing) return;
      closing = true;
      stopBurning();
      for (const wake of [...wakeOnClose]) wake();
      wakeOnClose.clear();
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      server.closeAllConnections();
      await closed;
    },
  };
}
