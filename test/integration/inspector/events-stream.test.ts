/**
 * GET /v1/events/stream: every recorded transition once, in order, with its history row id;
 * Last-Event-ID resumes exactly; a client that does not read is dropped with `resync` and the
 * server's buffered bytes stay bounded.
 */
import { spawn } from 'node:child_process';
import type { Socket } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import type { StreamEvent } from '../../../src/api/events-stream.ts';
import type { TransitionRow } from '../../../src/store/store.ts';
import { waitFor } from '../../harness/wait.ts';
import { type InspectorFixture, inspectorFixture, openStream, parseSse, probe } from './fixture.ts';

let f: InspectorFixture | null = null;
afterEach(async () => {
  await f?.close();
  f = null;
});

const TOKEN = 'inspector-test-token';

const SLOW_CLIENT = `
import socket, sys
port, token = int(sys.argv[1]), sys.argv[2]
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
s.connect(('127.0.0.1', port))
s.sendall(('GET /v1/events/stream HTTP/1.1\\r\\nHost: x\\r\\nAuthorization: Bearer %s\\r\\n\\r\\n' % token).encode())
sys.stdout.write('sent\\n'); sys.stdout.flush()
sys.stdin.readline()
s.settimeout(3)
while True:
    try:
        chunk = s.recv(65536)
    except (socket.timeout, ConnectionError):
        break
    if not chunk: break
    sys.stdout.write(chunk.decode('utf8', 'replace')); sys.stdout.flush()
`;
const auth = { authorization: `Bearer ${TOKEN}` };

async function deployRunning(fx: InspectorFixture, name: string, replicas: number) {
  const d = await fx.flotilla.deploy({ name, model_path: 'examples/echo', replicas });
  await waitFor(
    async () => {
      await probe(fx, 'ready');
      const v = await fx.flotilla.get(name);
      return (
        v.state === 'RUNNING' && v.routes.filter((r) => r.state === 'HEALTHY').length === replicas
      );
    },
    { timeoutMs: 20_000, message: `${name} RUNNING with ${replicas} HEALTHY routes` },
  );
  return d;
}

async function historyAfter(fx: InspectorFixture, id: string, after: number) {
  const rows: TransitionRow[] = [];
  let cursor: number | null = after;
  while (cursor !== null) {
    const page = await fx.flotilla.store.history({ deploymentId: id, after: cursor, limit: 1000 });
    rows.push(...page.items);
    cursor = page.next;
  }
  return rows;
}

describe('GET /v1/events/stream', () => {
  it('needs the bearer token, streams each transition with its history row id, and resumes from Last-Event-ID with nothing lost or repeated', async (ctx) => {
    f = await inspectorFixture(ctx, { token: TOKEN });
    const fx = f;
    const d = await deployRunning(fx, 'flip', 2);

    const denied = await fetch(`${fx.url}/v1/events/stream?deployment=flip`);
    expect(denied.status).toBe(401);
    expect(((await denied.json()) as { error: { code: string } }).error.code).toBe('unauthorized');

    const first = openStream(`${fx.url}/v1/events/stream?deployment=flip`, auth);
    expect(await first.status).toBe(200);
    const ready = await waitFor(() => first.events.find((e) => e.event === 'ready'));
    const start = JSON.parse(ready.data).cursor as number;
    expect(start).toBeGreaterThan(0);

    await probe(fx, 'stale');
    await probe(fx, 'ready');
    const messages = () => first.events.filter((e) => e.event === 'message');
    await waitFor(() => messages().length >= 4, { message: 'four route transitions streamed' });
    first.close();
    const seen = messages();
    const lastId = seen[seen.length - 1]!.id!;

    // While nobody listens: more transitions, including a killed replica.
    await probe(fx, 'stale');
    fx.backend.kill((await fx.flotilla.get('flip')).replicas[0]!.id);
    await probe(fx, 'ready');

    const second = openStream(`${fx.url}/v1/events/stream?deployment=flip`, {
      ...auth,
      'last-event-id': lastId,
    });
    const rows = await waitFor(
      async () => {
        const all = await historyAfter(fx, d.id, start);
        const got = seen.length + second.events.filter((e) => e.event === 'message').length;
        return all.length > seen.length && got === all.length ? all : null;
      },
      { message: 'the resumed stream caught up with the history' },
    );
    second.close();
    const streamed = [...seen, ...second.events.filter((e) => e.event === 'message')];
    expect(streamed.map((e) => Number(e.id))).toEqual(rows.map((r) => r.id));
    const data = streamed.map((e) => JSON.parse(e.data) as StreamEvent);
    expect(data.map((e) => [e.id, e.actor, e.from, e.to, e.cause, e.at])).toEqual(
      rows.map((r) => [r.id, r.actor_id, r.from_state, r.to_state, r.reason, r.at]),
    );
    expect(data.every((e) => e.deployment_id === d.id)).toBe(true);
    expect(
      data.some((e) => e.kind === 'replica' && e.from === 'HEALTHY' && e.to === 'UNHEALTHY'),
    ).toBe(true);
  });

  it('drops a client that stops reading while 10,000 transitions happen, tells it to resync, and keeps the server buffer bounded while a reading client gets every event', async (ctx) => {
    f = await inspectorFixture(ctx, { token: TOKEN });
    const fx = f;
    const routes = 20;
    await deployRunning(fx, 'many', routes);

    const sockets = new Set<Socket>();
    fx.app.server.on('connection', (s: Socket) => sockets.add(s));
    const reader = openStream(`${fx.url}/v1/events/stream`, auth);
    await waitFor(() => reader.events.some((e) => e.event === 'ready'));

    // The slow client: sends its request and reads nothing until told to. It is a Python
    // process because Node cannot shrink a socket's receive buffer, and loopback's default one
    // would take the whole run's bytes and hide the server's behaviour.
    const { port } = new URL(fx.url);
    const slow = spawn('python3', ['-c', SLOW_CLIENT, port, TOKEN], {
      stdio: ['pipe', 'pipe', 'inherit'],
    });
    let text = '';
    slow.stdout.setEncoding('utf8');
    slow.stdout.on('data', (chunk: string) => {
      text += chunk;
    });
    let slowClosed = false;
    slow.on('close', () => {
      slowClosed = true;
    });
    await waitFor(() => text.startsWith('sent'), { message: 'slow client connected' });
    await waitFor(() => sockets.size >= 2, { message: 'both streams connected' });

    const heapBefore = process.memoryUsage().heapUsed;
    let maxBuffered = 0;
    let transitions = 0;
    const target = 10_000;
    const sampler = setInterval(() => {
      for (const s of sockets) maxBuffered = Math.max(maxBuffered, s.writableLength);
    }, 5);
    // Loopback's kernel buffers take ≈2.7 MB of a client that reads nothing before a byte is
    // held by the server (measured), about 10,000 events' worth: so at least 10,000
    // transitions, then on until the server has ended the slow client's response, at most
    // 60,000. (`_httpMessage` is Node's response on a server socket.)
    const dropped = () =>
      [...sockets].some(
        (s) =>
          (s as unknown as { _httpMessage?: { writableEnded: boolean } })._httpMessage
            ?.writableEnded,
      );
    while (transitions < 60_000 && (transitions < target || !dropped())) {
      for (let i = 0; i < 25; i++) {
        await probe(fx, 'stale');
        await probe(fx, 'ready');
        transitions += 2 * routes;
      }
    }
    const heapAfter = process.memoryUsage().heapUsed;
    const droppedInTime = dropped();
    slow.stdin.write('read\n');

    await waitFor(() => reader.events.filter((e) => e.event === 'message').length >= transitions, {
      timeoutMs: 30_000,
      message: () =>
        `the reading client got ${reader.events.filter((e) => e.event === 'message').length} of ${transitions}`,
    });
    const ids = reader.events.filter((e) => e.event === 'message').map((e) => Number(e.id));
    expect(new Set(ids).size).toBe(ids.length);
    expect(ids).toEqual([...ids].sort((a, b) => a - b));
    reader.close();

    clearInterval(sampler);
    await waitFor(() => slowClosed, {
      timeoutMs: 40_000,
      message: 'the slow client finished reading',
    });
    const body = text.slice(text.indexOf('\r\n\r\n') + 4).replace(/\r?\n?[0-9a-f]+\r\n/g, '\n');
    const events = parseSse(`${body}\n\n`).events;
    const received = events.filter((e) => e.event === 'message').length;
    console.log(
      `[slow client] dropped after ${received} of ${transitions} events (resync seen: ${text.includes('event: resync')}); max unsent bytes on a server socket ${maxBuffered}; heap ${((heapAfter - heapBefore) / 1e6).toFixed(1)} MB`,
    );
    // The server ended the slow client's response (after writing `event: resync`) instead
    // of buffering the rest; the client got only part of the stream.
    expect(droppedInTime).toBe(true);
    expect(events.some((e) => e.event === 'resync')).toBe(true);
    expect(received).toBeLessThan(transitions);
    // 1 MiB bound + one history page (500 rows) of headroom.
    expect(maxBuffered).toBeLessThan(1024 * 1024 + 512 * 1024);
  });
});
