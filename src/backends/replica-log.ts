/**
 * Bounded per-replica log files. The replica writes straight into `output.log` through an
 * O_APPEND descriptor it inherited (no pipe through the coordinator, so logging survives a
 * coordinator crash). The backend trims from outside: when the file passes the cap, its last
 * `cap` bytes are copied to `output.log.1` and it is truncated in place; O_APPEND makes the
 * replica's next write land at the new end. While a backend watches (every second), disk use
 * stays near twice the cap; bytes written between the copy and the truncation are lost, which a
 * log can afford.
 */
import { constants, promises as fsp } from 'node:fs';
import path from 'node:path';

export const LOG_FILE = 'output.log';
export const ROTATED_LOG_FILE = 'output.log.1';
export const DEFAULT_LOG_CAP_BYTES = 1024 * 1024;
export const DEFAULT_TAIL_BYTES = 64 * 1024;

/** Rotates `<dir>/output.log` when it is larger than capBytes. Returns whether it rotated. */
export async function trimLog(dir: string, capBytes: number): Promise<boolean> {
  const file = path.join(dir, LOG_FILE);
  let size: number;
  try {
    size = (await fsp.stat(file)).size;
  } catch {
    return false;
  }
  if (size <= capBytes) return false;
  const tail = await readLastBytes(file, capBytes);
  await fsp.writeFile(path.join(dir, ROTATED_LOG_FILE), tail);
  await fsp.truncate(file, 0);
  return true;
}

async function readLastBytes(file: string, n: number): Promise<Buffer> {
  if (n <= 0) return Buffer.alloc(0);
  let handle: fsp.FileHandle;
  try {
    handle = await fsp.open(file, constants.O_RDONLY);
  } catch {
    return Buffer.alloc(0);
  }
  try {
    const { size } = await handle.stat();
    const length = Math.min(size, n);
    const buf = Buffer.alloc(length);
    const { bytesRead } = await handle.read(buf, 0, length, size - length);
    return buf.subarray(0, bytesRead);
  } finally {
    await handle.close();
  }
}

/** The last tailBytes of the replica's output, across the rotated and the current file. */
export async function readLogTail(dir: string, tailBytes: number): Promise<string> {
  const current = await readLastBytes(path.join(dir, LOG_FILE), tailBytes);
  const older =
    current.length < tailBytes
      ? await readLastBytes(path.join(dir, ROTATED_LOG_FILE), tailBytes - current.length)
      : Buffer.alloc(0);
  return Buffer.concat([older, current]).toString('utf8');
}
