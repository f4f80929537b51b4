/** `flotilla machines`: prints the export of the machine definitions; refuses bad arguments. */
import { afterEach, describe, expect, it, vi } from 'vitest';
import { run } from '../../src/cli/commands/machines.ts';
import { exportStatechart, statechart } from '../../src/inspector/statechart.ts';

afterEach(() => vi.restoreAllMocks());

function capture() {
  let out = '';
  vi.spyOn(process.stdout, 'write').mockImplementation((chunk: string | Uint8Array) => {
    out += String(chunk);
    return true;
  });
  vi.spyOn(console, 'error').mockImplementation(() => {});
  return () => out;
}

describe('flotilla machines', () => {
  it('prints one machine in each format exactly as exported', async () => {
    for (const format of ['mermaid', 'scxml', 'json'] as const) {
      const out = capture();
      expect(await run(['replica', '--format', format])).toBe(0);
      expect(out()).toBe(exportStatechart('replica', format));
      vi.restoreAllMocks();
    }
  });

  it('prints all three machines as one JSON object without a name', async () => {
    const out = capture();
    expect(await run(['--format', 'json'])).toBe(0);
    expect(JSON.parse(out())).toEqual({
      deployment: statechart('deployment'),
      replica: statechart('replica'),
      route: statechart('route'),
    });
  });

  it('exits 2 for an unknown machine or format', async () => {
    capture();
    expect(await run(['coordinator'])).toBe(2);
    expect(await run(['route', '--format', 'dot'])).toBe(2);
  });
});
