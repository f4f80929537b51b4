/**
 * A client of HAProxy's runtime API (the admin stats socket) and master CLI: one Unix-socket
 * connection per command, in non-interactive mode (HAProxy answers and closes).
 */
import { connect } from 'node:net';

/** One runtime API command's answer; HAProxy answers errors in text, not with a status. */
export async function runtimeCommand(
  socketPath: string,
  command: string,
  timeoutMs = 5_000,
): Promise<string> {
  return new Promise((resolve, reject) => {
    const sock = connect(socketPath);
    let out = '';
    const timer = setTimeout(() => {
      sock.destroy();
      reject(
        new Error(
          `haproxy runtime API: no answer to ${JSON.stringify(command)} in ${timeoutMs} ms`,
        ),
      );
    }, timeoutMs);
    sock.setEncoding('utf8');
    sock.on('connect', () => sock.end(`${command}\n`));
    sock.on('data', (d: string) => {
      out += d;
    });
    sock.on('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    sock.on('close', () => {
      clearTimeout(timer);
      resolve(out);
    });
  });
}

/**
 * Answers of state-changing commands that mean success: empty, or one of HAProxy's
 * confirmation lines (`New server registered.`, `Server deleted.`, …).
 */
const OK_ANSWERS = [
  /^\s*$/,
  /^New server registered\.\s*$/,
  /^Server deleted\.\s*$/,
  /^done\.?\s*$/i,
];

/** Whether a state-changing command's answer says it was applied. */
export function isOkAnswer(answer: string): boolean {
  return OK_ANSWERS.some((re) => re.test(answer));
}

/** Per server of `show stat`: current sessions (in flight) and its backend's queue. */
export interface ServerStat {
  backend: string;
  server: string;
  /** Sessions on the server now (requests in flight). */
  current: number;
  queued: number;
}

/** Parses `show stat` CSV (servers and backend rows; frontends are skipped). */
export function parseShowStat(csv: string): {
  servers: ServerStat[];
  backendQueue: Map<string, number>;
  /** Sessions each backend has taken since HAProxy started (`stot`): a change means traffic. */
  backendTotal: Map<string, number>;
} {
  const lines = csv.split('\n');
  const header = (lines[0] ?? '').replace(/^#\s*/, '').split(',');
  const col = (n: string) => header.indexOf(n);
  const [px, sv, qcur, scur, stot] = [
    col('pxname'),
    col('svname'),
    col('qcur'),
    col('scur'),
    col('stot'),
  ];
  const servers: ServerStat[] = [];
  const backendQueue = new Map<string, number>();
  const backendTotal = new Map<string, number>();
  for (const line of lines.slice(1)) {
    if (!line) continue;
    const f = line.split(',');
    const server = f[sv] ?? '';
    if (server === 'FRONTEND') continue;
    if (server === 'BACKEND') {
      backendQueue.set(f[px] ?? '', Number(f[qcur]) || 0);
      backendTotal.set(f[px] ?? '', Number(f[stot]) || 0);
      continue;
    }
    servers.push({
      backend: f[px] ?? '',
      server,
      current: Number(f[scur]) || 0,
      queued: Number(f[qcur]) || 0,
    });
  }
  return { servers, backendQueue, backendTotal };
}
