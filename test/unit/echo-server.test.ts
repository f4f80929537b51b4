import { readdirSync, readFileSync } from 'node:fs';
import OpenAI from 'openai';
import { afterEach, describe, expect, it } from 'vitest';
import { readProcStat } from '../../src/backends/proc.ts';
import { type EchoServer, startEchoServer } from '../../src/echo/server.ts';
import { waitFor } from '../harness/wait.ts';

const servers: EchoServer[] = [];
afterEach(async () => {
  await Promise.all(servers.splice(0).map((s) => s.close()));
});

async function start(opts: Partial<Parameters<typeof startEchoServer>[0]> = {}) {
  const server = await startEchoServer({ port: 0, onCrash: () => {}, ...opts });
  servers.push(server);
  const base = `http://127.0.0.1:${server.port}`;
  const client = new OpenAI({ baseURL: `${base}/v1`, apiKey: 'unused', maxRetries: 0 });
  return { server, base, client };
}

describe('echo server with the official openai client', () => {
  it('answers a chat completion with the words of the last user message', async () => {
    const { client } = await start({ model: 'echo-test' });
    const reply = await client.chat.completions.create({
      model: 'echo-test',
      messages: [
        { role: 'system', content: 'be brief' },
        { role: 'user', content: 'first message' },
        { role: 'assistant', content: 'first message' },
        { role: 'user', content: 'hello   wide\nworld' },
      ],
    });
    expect(reply.object).toBe('chat.completion');
    expect(reply.model).toBe('echo-test');
    expect(reply.choices[0]?.message.content).toBe('hello wide world');
    expect(reply.choices[0]?.finish_reason).toBe('stop');
    expect(reply.usage).toEqual({ prompt_tokens: 9, completion_tokens: 3, total_tokens: 12 });
  });

  it('spins cpuMsPerRequest on its thread before a plain reply', async () => {
    const { client } = await start({ cpuMsPerRequest: 60 });
    const t0 = performance.now();
    const reply = await client.chat.completions.create({
      model: 'echo',
      messages: [{ role: 'user', content: 'spin' }],
    });
    const elapsed = performance.now() - t0;
    expect(reply.choices[0]?.message.content).toBe('spin');
    // A busy loop of 60 ms on this thread: the reply cannot come sooner.
    expect(elapsed).toBeGreaterThanOrEqual(60);
  });

  it('streams a chat completion as one chunk per token, ending with [DONE]', async () => {
    const { client } = await start({ tokenLatencyMs: 5 });
    const stream = await client.chat.completions.create({
      model: 'echo',
      messages: [{ role: 'user', content: 'one two three four' }],
      stream: true,
      stream_options: { include_usage: true },
    });
    const deltas: string[] = [];
    let finish: string | null = null;
    let usage: unknown = null;
    for await (const chunk of stream) {
      expect(chunk.object).toBe('chat.completion.chunk');
      const choice = chunk.choices[0];
      if (choice?.delta.content) deltas.push(choice.delta.content);
      if (choice?.finish_reason) finish = choice.finish_reason;
      if (chunk.usage) usage = chunk.usage;
    }
    expect(deltas).toEqual(['one', ' two', ' three', ' four']);
    expect(deltas.join('')).toBe('one two three four');
    expect(finish).toBe('stop');
    expect(usage).toEqual({ prompt_tokens: 4, completion_tokens: 4, total_tokens: 8 });
  });

  it('answers legacy completions, plain and streamed, honouring max_tokens', async () => {
    const { client } = await start();
    const plain = await client.completions.create({
      model: 'echo',
      prompt: 'a b c d',
      max_tokens: 2,
    });
    expect(plain.choices[0]?.text).toBe('a b');
    expect(plain.choices[0]?.finish_reason).toBe('length');
    const stream = await client.completions.create({
      model: 'echo',
      prompt: 'x y z',
      stream: true,
    });
    const texts: string[] = [];
    for await (const chunk of stream) texts.push(chunk.choices[0]?.text ?? '');
    expect(texts.join('')).toBe('x y z');
  });

  it('lists its model with the pid and replica id, and marks responses with x-echo-pid', async () => {
    const { client } = await start({ model: 'm1', replicaId: 'replica-7' });
    const { data, response } = await client.models.list().withResponse();
    expect(response.headers.get('x-echo-pid')).toBe(String(process.pid));
    expect(response.headers.get('x-echo-replica')).toBe('replica-7');
    const models = [];
    for await (const m of data) models.push(m);
    expect(models.map((m) => m.id)).toEqual(['m1']);
    expect(models[0]).toMatchObject({ pid: process.pid, replica_id: 'replica-7' });
  });

  it('reports a bad request in the OpenAI error shape', async () => {
    const { client, base } = await start();
    await expect(
      client.chat.completions.create({ model: 'echo', messages: 'nope' as never }),
    ).rejects.toMatchObject({ status: 400 });
    const res = await fetch(`${base}/v1/chat/completions`, { method: 'POST', body: '{bad json' });
    expect(res.status).toBe(400);
    expect(await res.json()).toMatchObject({ error: { type: 'invalid_request_error' } });
    expect((await fetch(`${base}/nowhere`)).status).toBe(404);
  });
});

describe('echo server health and fault injection', () => {
  it('answers /health 503 during the startup delay and 200 after it', async () => {
    const startedAt = Date.now();
    const { base } = await start({ startupDelayMs: 400 });
    const first = await fetch(`${base}/health`);
    // Only meaningful when the check ran inside the delay, which a loaded machine may miss.
    if (Date.now() - startedAt < 350) expect(first.status).toBe(503);
    await waitFor(async () => (await fetch(`${base}/health`)).status === 200);
    expect(Date.now() - startedAt).toBeGreaterThanOrEqual(400);
  });

  it('fails /health after POST /admin/health {"ok": false} and recovers after {"ok": true}', async () => {
    const { base } = await start();
    const admin = (ok: boolean) =>
      fetch(`${base}/admin/health`, { method: 'POST', body: JSON.stringify({ ok }) });
    expect((await fetch(`${base}/health`)).status).toBe(200);
    expect((await admin(false)).status).toBe(200);
    expect((await fetch(`${base}/health`)).status).toBe(503);
    expect((await admin(true)).status).toBe(200);
    expect((await fetch(`${base}/health`)).status).toBe(200);
  });

  it('calls the crash hook on POST /admin/crash', async () => {
    let crashed = 0;
    const { base } = await start({ onCrash: () => crashed++ });
    await fetch(`${base}/admin/crash`, { method: 'POST' }).catch(() => undefined);
    expect(crashed).toBe(1);
  });

  it('stops answering every request after POST /admin/hang, health included', async () => {
    const { base, server } = await start({ tokenLatencyMs: 30 });
    const streaming = await fetch(`${base}/v1/completions`, {
      method: 'POST',
      body: JSON.stringify({ prompt: 'a b c d e f g h i j k l', stream: true }),
    });
    expect((await fetch(`${base}/admin/hang`, { method: 'POST' })).status).toBe(200);
    const probe = (p: string) =>
      fetch(`${base}${p}`, { signal: AbortSignal.timeout(300) }).then(
        (r) => `status ${r.status}`,
        (e: Error) => e.name,
      );
    expect(await probe('/health')).toBe('TimeoutError');
    expect(await probe('/v1/models')).toBe('TimeoutError');
    // The stream that was under way stops too, without its [DONE].
    const body = streaming.body!.getReader();
    const received: string[] = [];
    const reading = (async () => {
      for (;;) {
        const { done, value } = await body.read();
        if (done) return;
        received.push(Buffer.from(value).toString());
      }
    })().catch(() => undefined);
    await server.close();
    await reading;
    expect(received.join('')).not.toContain('[DONE]');
  });
});

describe('echo server: /v1/ faults (POST /admin/delay, /admin/errors, /admin/reset)', () => {
  const post = (base: string, path: string, body: unknown) =>
    fetch(`${base}${path}`, { method: 'POST', body: JSON.stringify(body) });
  const probe = (base: string, p: string, timeoutMs = 5_000) =>
    fetch(`${base}${p}`, { signal: AbortSignal.timeout(timeoutMs) }).then(
      (r) => `status ${r.status}`,
      (e: Error & { cause?: { code?: string } }) => e.cause?.code ?? e.name,
    );

  it('holds /v1/ answers for the injected delay while /health answers, and stops after ms 0', async () => {
    const { base } = await start();
    expect((await post(base, '/admin/delay', { ms: 600_000 })).status).toBe(200);
    expect(await probe(base, '/v1/models', 300)).toBe('TimeoutError');
    expect(await probe(base, '/health')).toBe('status 200');
    expect((await post(base, '/admin/delay', { ms: 0 })).status).toBe(200);
    expect(await probe(base, '/v1/models')).toBe('status 200');
  });

  it('answers /v1/ with the injected 5xx in the OpenAI error shape, /health spared, until status 0', async () => {
    const { base } = await start();
    expect((await post(base, '/admin/errors', { status: 500 })).status).toBe(200);
    const r = await fetch(`${base}/v1/chat/completions`, {
      method: 'POST',
      body: JSON.stringify({ messages: [{ role: 'user', content: 'hi' }] }),
    });
    expect(r.status).toBe(500);
    expect(((await r.json()) as { error: { type: string } }).error.type).toBe('server_error');
    expect(await probe(base, '/health')).toBe('status 200');
    expect((await post(base, '/admin/errors', { status: 0 })).status).toBe(200);
    expect(await probe(base, '/v1/models')).toBe('status 200');
  });

  it('resets /v1/ connections without an answer, /health spared, until on false', async () => {
    const { base } = await start();
    expect((await post(base, '/admin/reset', { on: true })).status).toBe(200);
    expect(await probe(base, '/v1/models')).toBe('ECONNRESET');
    expect(await probe(base, '/health')).toBe('status 200');
    expect((await post(base, '/admin/reset', { on: false })).status).toBe(200);
    expect(await probe(base, '/v1/models')).toBe('status 200');
  });

  it('refuses bad toggle values with 400 naming the field', async () => {
    const { base } = await start();
    const bad = async (path: string, body: unknown) => {
      const r = await post(base, path, body);
      return `${r.status} ${((await r.json()) as { error: { message: string } }).error.message.split(':')[0]}`;
    };
    expect(await bad('/admin/delay', { ms: -1 })).toBe('400 ms');
    expect(await bad('/admin/errors', { status: 404 })).toBe('400 status');
    expect(await bad('/admin/reset', { on: 'yes' })).toBe('400 on');
  });
});

/** Live children of this process spinning for the echo server's burn (their argv says so). */
function burners(): number[] {
  const found: number[] = [];
  for (const entry of readdirSync('/proc')) {
    const pid = Number(entry);
    if (!Number.isInteger(pid)) continue;
    const stat = readProcStat(pid);
    if (!stat || stat.ppid !== process.pid || stat.state === 'Z') continue;
    try {
      if (readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes('while (Date.now() < end)')) {
        found.push(pid);
      }
    } catch {
      // exited meanwhile
    }
  }
  return found;
}

describe('echo server: POST /admin/burn', () => {
  const post = (base: string, body: unknown) =>
    fetch(`${base}/admin/burn`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(body),
    });

  it('hands seconds and cores (default 1) to the burn hook; 0 seconds stops', async () => {
    const calls: Array<[number, number]> = [];
    const { base } = await start({ onBurn: (s, c) => calls.push([s, c]) });
    const res = await post(base, { seconds: 30 });
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ seconds: 30, cores: 1 });
    expect(await (await post(base, { seconds: 0, cores: 3 })).json()).toEqual({
      seconds: 0,
      cores: 0,
    });
    expect(calls).toEqual([
      [30, 1],
      [0, 3],
    ]);
  });

  it('refuses a bad seconds or cores with 400 naming the field', async () => {
    const { base } = await start({ onBurn: () => {} });
    for (const [body, field] of [
      [{}, 'seconds'],
      [{ seconds: -1 }, 'seconds'],
      [{ seconds: 3601 }, 'seconds'],
      [{ seconds: 'long' }, 'seconds'],
      [{ seconds: 1, cores: 0 }, 'cores'],
      [{ seconds: 1, cores: 1.5 }, 'cores'],
      [{ seconds: 1, cores: 65 }, 'cores'],
    ] as const) {
      const res = await post(base, body);
      expect(res.status, JSON.stringify(body)).toBe(400);
      const err = (await res.json()) as { error: { message: string } };
      expect(err.error.message.startsWith(`${field}:`), err.error.message).toBe(true);
    }
  });

  it('by default spins child processes until told to stop, and close() stops them too', async () => {
    const { base, server } = await start();
    expect(burners()).toEqual([]);
    expect((await post(base, { seconds: 60, cores: 2 })).status).toBe(200);
    await waitFor(() => burners().length === 2, { message: 'two burners running' });
    expect((await post(base, { seconds: 0 })).status).toBe(200);
    await waitFor(() => burners().length === 0, { message: 'burners stopped' });
    expect((await post(base, { seconds: 60 })).status).toBe(200);
    await waitFor(() => burners().length === 1, { message: 'one burner running' });
    await server.close();
    await waitFor(() => burners().length === 0, { message: 'burners stopped by close()' });
  });
});
