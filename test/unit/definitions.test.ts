import { describe, expect, it } from 'vitest';
import { FlotillaError } from '../../src/domain/errors.ts';
import { type ModelRevisionSpec, modelRevisionSpecSchema } from '../../src/domain/revision.ts';
import { DEFAULT_HEALTH_CHECK } from '../../src/domain/session.ts';
import {
  generateSession,
  getGenerator,
  registerGenerator,
  runtimeVariants,
  type SessionGenerator,
} from '../../src/session-generators/index.ts';

const GiB = 1024 ** 3;
const MODEL = 'meta-llama/Llama-3.1-8B-Instruct';

function revision(fields: Record<string, unknown>): ModelRevisionSpec {
  return modelRevisionSpecSchema.parse(fields);
}

function generatorFailure(rev: ModelRevisionSpec): FlotillaError {
  try {
    generateSession(rev);
  } catch (err) {
    expect(err).toBeInstanceOf(FlotillaError);
    return err as FlotillaError;
  }
  throw new Error('expected generateSession to fail');
}

describe('the registry', () => {
  it('knows the seven documented runtime variants', () => {
    expect([...runtimeVariants]).toEqual([
      'vllm',
      'huggingface-tgi',
      'sglang',
      'nim',
      'modular-max',
      'cmd',
      'custom',
    ]);
  });

  it('finds a generator whatever the case or separator', () => {
    expect(getGenerator('HUGGINGFACE_TGI')?.variant).toBe('huggingface-tgi');
    expect(getGenerator('nope')).toBeUndefined();
  });

  it('adds a variant with one registration and refuses a duplicate', () => {
    const echo: SessionGenerator = {
      variant: 'test-echo',
      summary: 'test only',
      defaults: { port: 1234, healthPath: '/ping' },
      validate: () => [],
      generate: (rev) => ({
        runtime_variant: rev.runtime_variant,
        command: ['echo', '{port}'],
        environ: {},
        port: 1234,
        health: { ...DEFAULT_HEALTH_CHECK, path: '/ping' },
        resources: { cpu: 1, mem: 1, gpu: 0 },
      }),
    };
    registerGenerator(echo);
    expect(runtimeVariants).toContain('test-echo');
    expect(generateSession(revision({ runtime_variant: 'test-echo' })).command).toEqual([
      'echo',
      '{port}',
    ]);
    expect(() => registerGenerator(echo)).toThrow(
      'a generator for "test-echo" is already registered',
    );
    expect(() => registerGenerator({ ...echo, variant: 'Test_Echo2' })).toThrow(
      'must be written "test-echo2"',
    );
  });
});

interface GeneratorCase {
  variant: string;
  fields: Record<string, unknown>;
  argv: string[];
  port: number;
  healthPath: string;
  environ?: Record<string, string>;
  image?: string;
}

const generators: GeneratorCase[] = [
  {
    variant: 'vllm',
    fields: { model: MODEL, model_name: 'llama' },
    argv: [
      'vllm',
      'serve',
      MODEL,
      '--host',
      '0.0.0.0',
      '--port',
      '{port}',
      '--served-model-name',
      'llama',
    ],
    port: 8000,
    healthPath: '/health',
  },
  {
    variant: 'huggingface-tgi',
    fields: { model: MODEL },
    argv: [
      'text-generation-launcher',
      '--model-id',
      MODEL,
      '--hostname',
      '0.0.0.0',
      '--port',
      '{port}',
    ],
    port: 80,
    healthPath: '/health',
  },
  {
    variant: 'sglang',
    fields: { model: MODEL },
    argv: [
      'python3',
      '-m',
      'sglang.launch_server',
      '--model-path',
      MODEL,
      '--host',
      '0.0.0.0',
      '--port',
      '{port}',
      '--served-model-name',
      MODEL,
    ],
    port: 30000,
    healthPath: '/health',
  },
  {
    variant: 'nim',
    fields: {
      environment: { image: 'nvcr.io/nim/meta/llama-3.1-8b-instruct:1.0' },
      model_name: 'llama',
    },
    argv: ['/opt/nim/start_server.sh'],
    port: 8000,
    healthPath: '/v1/health/ready',
    environ: { NIM_SERVER_PORT: '8000', NIM_SERVED_MODEL_NAME: 'llama' },
    image: 'nvcr.io/nim/meta/llama-3.1-8b-instruct:1.0',
  },
  {
    variant: 'modular-max',
    fields: { model: MODEL },
    argv: ['max', 'serve', '--model', MODEL, '--port', '{port}'],
    port: 8000,
    healthPath: '/v1/health',
  },
  {
    variant: 'cmd',
    fields: { command: ['python3', '-m', 'http.server', '{port}'] },
    argv: ['python3', '-m', 'http.server', '{port}'],
    port: 8000,
    healthPath: '/health',
  },
  {
    variant: 'custom',
    fields: {
      command: ['/srv/bin/serve', '--listen', ':{port}'],
      port: 7070,
      environment: { image: 'acme:1' },
    },
    argv: ['/srv/bin/serve', '--listen', ':{port}'],
    port: 7070,
    healthPath: '/health',
    image: 'acme:1',
  },
];

describe('one generator per runtime variant', () => {
  it.each(generators)('$variant: exact argv, port and health path', (c) => {
    const session = generateSession(revision({ runtime_variant: c.variant, ...c.fields }));
    expect(session.runtime_variant).toBe(c.variant);
    expect(session.command).toEqual(c.argv);
    expect(session.port).toBe(c.port);
    expect(session.health).toEqual({ ...DEFAULT_HEALTH_CHECK, path: c.healthPath });
    expect(session.environ).toEqual(c.environ ?? {});
    expect(session.image).toBe(c.image);
    expect(session.resources).toEqual({ cpu: 1, mem: GiB, gpu: 0 });
  });
});

describe('what every generator shares', () => {
  it('loads the model folder and serves it under the folder name when nothing else is given', () => {
    const session = generateSession(
      revision({ runtime_variant: 'vllm', model_path: '/models/llama-3' }),
    );
    expect(session.command).toEqual([
      'vllm',
      'serve',
      '/models/llama-3',
      '--host',
      '0.0.0.0',
      '--port',
      '{port}',
      '--served-model-name',
      'llama-3',
    ]);
    expect(session.workdir).toBe('/models/llama-3');
  });

  it("uses the revision's command instead of the runtime's, and appends extra_args to either", () => {
    const own = generateSession(
      revision({
        runtime_variant: 'vllm',
        command: ['my-vllm', '--port', '{port}'],
        extra_args: ['--x'],
      }),
    );
    expect(own.command).toEqual(['my-vllm', '--port', '{port}', '--x']);
    const extra = generateSession(
      revision({ runtime_variant: 'modular-max', model: 'm', extra_args: ['--devices', 'gpu:0'] }),
    );
    expect(extra.command).toEqual([
      'max',
      'serve',
      '--model',
      'm',
      '--port',
      '{port}',
      '--devices',
      'gpu:0',
    ]);
  });

  it('takes port, health settings, environ and resources from the revision, memory in bytes', () => {
    const session = generateSession(
      revision({
        runtime_variant: 'nim',
        environment: { image: 'nim:1' },
        port: 9000,
        environ: { NGC_API_KEY: 'k', NIM_SERVER_PORT: 'user-wins' },
        health_check: { interval_s: 10, startup_timeout_s: 1800 },
        resource_slots: { cpu: 8, mem: '1.5GiB', gpu: 2 },
      }),
    );
    expect(session.port).toBe(9000);
    expect(session.environ).toEqual({ NIM_SERVER_PORT: 'user-wins', NGC_API_KEY: 'k' });
    expect(session.health).toEqual({
      ...DEFAULT_HEALTH_CHECK,
      path: '/v1/health/ready',
      interval_s: 10,
      startup_timeout_s: 1800,
    });
    expect(session.resources).toEqual({ cpu: 8, mem: 1.5 * GiB, gpu: 2 });
  });
});

describe('generator failures are typed errors', () => {
  it('a revision missing what the variant needs fails with generator_failed and the field', () => {
    const err = generatorFailure(revision({ runtime_variant: 'cmd' }));
    expect(err.code).toBe('generator_failed');
    expect(err.status).toBe(422);
    expect(err.details.map((d) => d.path)).toEqual(['command']);
    expect(
      generatorFailure(revision({ runtime_variant: 'nim' })).details.map((d) => d.path),
    ).toEqual(['environment.image']);
  });

  it('an unknown variant lists the valid ones', () => {
    const err = generatorFailure(revision({ runtime_variant: 'tensorrt' }));
    expect(err.code).toBe('generator_failed');
    expect(err.message).toMatch(
      /^no definition generator for runtime variant "tensorrt"; valid variants: vllm, /,
    );
  });

  it('a malformed revision (read back from storage, say) fails instead of producing nonsense', () => {
    const bad = {
      ...revision({ runtime_variant: 'cmd', command: ['x'] }),
      resource_slots: { cpu: 1, mem: 'lots', gpu: 0 },
    };
    const err = generatorFailure(bad as ModelRevisionSpec);
    expect(err.code).toBe('generator_failed');
    expect(err.details).toEqual([
      { path: 'resource_slots.mem', message: expect.stringContaining('got "lots"') },
    ]);
  });

  it('a generator that throws is wrapped, keeping the cause', () => {
    const boom = new Error('boom');
    registerGenerator({
      variant: 'test-broken',
      summary: 'throws',
      defaults: { port: 1, healthPath: '/' },
      validate: () => [],
      generate: () => {
        throw boom;
      },
    });
    const err = generatorFailure(revision({ runtime_variant: 'test-broken' }));
    expect(err.code).toBe('generator_failed');
    expect(err.message).toBe('the test-broken generator failed: boom');
    expect(err.cause).toBe(boom);
  });
});
