/**
 * `flotilla validate` run as a process, the way an operator runs it.
 */
import { execFile } from 'node:child_process';
import { realpathSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const REPO = realpathSync(fileURLToPath(new URL('../../', import.meta.url)));
const FIXTURES = 'test/fixtures/definitions';

function flotilla(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    execFile(
      process.execPath,
      ['bin/flotilla.js', ...args],
      { cwd: REPO, timeout: 60_000, env: { ...process.env, NO_COLOR: '1' } },
      (err, stdout, stderr) => {
        if (err && typeof err.code !== 'number') reject(err);
        else resolve({ code: err ? (err.code as number) : 0, stdout, stderr });
      },
    );
  });
}

describe('flotilla validate', () => {
  it('prints the merged revision and the session spec of a good definition and exits 0', async () => {
    const { code, stdout, stderr } = await flotilla([
      'validate',
      `${FIXTURES}/documented-example`,
      '--variant',
      'vllm',
      '--set',
      'resource_slots.gpu=4',
      '--set',
      'model=org/model',
    ]);
    expect(stderr).toBe('');
    expect(code).toBe(0);
    const out = JSON.parse(stdout);
    expect(out.revision).toMatchObject({
      runtime_variant: 'vllm',
      model: 'org/model',
      environment: { image: 'vllm-optimized:0.4.0', architecture: 'x86_64' },
      resource_slots: { cpu: 8, mem: '16gb', gpu: 4 },
      environ: { LOG_LEVEL: 'INFO', MAX_BATCH_SIZE: '32', VLLM_GPU_MEMORY_UTILIZATION: '0.95' },
    });
    expect(out.session).toMatchObject({
      runtime_variant: 'vllm',
      command: [
        'vllm',
        'serve',
        'org/model',
        '--host',
        '0.0.0.0',
        '--port',
        '{port}',
        '--served-model-name',
        'org/model',
      ],
      image: 'vllm-optimized:0.4.0',
      port: 8000,
      health: { path: '/health' },
      resources: { cpu: 8, mem: 16 * 1024 ** 3, gpu: 4 },
    });
  });

  it('prints every problem of a broken definition, one "path: message" per line, and exits 1', async () => {
    const { code, stdout, stderr } = await flotilla([
      'validate',
      `${FIXTURES}/broken-schema`,
      '--variant',
      'vllm',
    ]);
    expect(code).toBe(1);
    expect(stdout).toBe('');
    const lines = stderr.trim().split('\n');
    expect(lines).toHaveLength(10);
    expect(lines).toContain(
      'resource_slots.cpu: expected a positive number, got "lots" (in service-definition.toml)',
    );
    expect(lines).toContain(
      'vllm.comand: unknown key (did you mean "command"?) (in service-definition.toml)',
    );
    for (const line of lines) expect(line).toMatch(/^[\w.[\]-]+: \S/);
    expect(stderr).not.toMatch(/\n\s+at /);
  });

  it('names file, line and column of a TOML syntax error and exits 1', async () => {
    const { code, stderr } = await flotilla([
      'validate',
      `${FIXTURES}/broken-syntax`,
      '--variant',
      'sglang',
    ]);
    expect(code).toBe(1);
    expect(stderr.trim()).toBe(
      'service-definition.toml:3:12: TOML syntax error: Unterminated string',
    );
  });

  it('refuses a model folder outside the model roots and exits 1', async () => {
    const { code, stderr } = await flotilla([
      'validate',
      `${FIXTURES}/cmd-echo`,
      '--variant',
      'cmd',
      '--model-root',
      `${FIXTURES}/documented-example`,
    ]);
    expect(code).toBe(1);
    expect(stderr.trim()).toMatch(/^model_path: ".*cmd-echo" is outside the allowed model roots$/);
  });

  it('exits 2 on a usage mistake', async () => {
    const { code, stderr } = await flotilla(['validate', `${FIXTURES}/cmd-echo`]);
    expect(code).toBe(2);
    expect(stderr).toMatch(
      /--variant is required \(vllm, huggingface-tgi, sglang, nim, modular-max, cmd, custom\)/,
    );
  });
});
