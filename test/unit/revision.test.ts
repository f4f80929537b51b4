import { realpathSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { type ErrorDetail, FlotillaError } from '../../src/domain/errors.ts';
import { generateRevision, type RevisionInput } from '../../src/revision/index.ts';

const FIXTURES = realpathSync(fileURLToPath(new URL('../fixtures/definitions/', import.meta.url)));
const opts = { modelRoots: [FIXTURES] };
const folder = (name: string) => `${FIXTURES}/${name}`;

async function failure(input: RevisionInput): Promise<FlotillaError> {
  try {
    await generateRevision(input, opts);
  } catch (err) {
    expect(err).toBeInstanceOf(FlotillaError);
    return err as FlotillaError;
  }
  throw new Error('expected generateRevision to fail');
}

const lines = (details: ErrorDetail[]) => details.map((d) => `${d.path}: ${d.message}`);

const DOCUMENTED_ENVIRON = {
  LOG_LEVEL: 'INFO',
  MAX_BATCH_SIZE: '32',
  VLLM_GPU_MEMORY_UTILIZATION: '0.95',
};

describe('the documented example (docs/definitions.md)', () => {
  it('gives exactly the documented result for vllm', async () => {
    const { revision, warnings } = await generateRevision(
      { runtime_variant: 'vllm', model_path: 'documented-example', request: {} },
      opts,
    );
    expect(revision).toEqual({
      runtime_variant: 'vllm',
      model_path: folder('documented-example'),
      environment: { image: 'vllm-optimized:0.4.0', architecture: 'x86_64' },
      resource_slots: { cpu: 8, mem: '16gb', gpu: 2 },
      environ: DOCUMENTED_ENVIRON,
      health_check: {},
    });
    expect(warnings).toEqual([]);
  });

  it('lets a request of resource_slots.gpu = 4 override both definition levels', async () => {
    const { revision } = await generateRevision(
      {
        runtime_variant: 'vllm',
        model_path: 'documented-example',
        request: { resource_slots: { gpu: 4 } },
      },
      opts,
    );
    expect(revision.resource_slots).toEqual({ cpu: 8, mem: '16gb', gpu: 4 });
    expect(revision.environment).toEqual({ image: 'vllm-optimized:0.4.0', architecture: 'x86_64' });
    expect(revision.environ).toEqual(DOCUMENTED_ENVIRON);
  });
});

interface GoodCase {
  name: string;
  input: RevisionInput;
  expected: Record<string, unknown>;
  warnings?: string[];
}

const good: GoodCase[] = [
  {
    name: 'another variant gets the root level only',
    input: { runtime_variant: 'sglang', model_path: 'documented-example', request: {} },
    expected: {
      environment: { image: 'default-inference:latest', architecture: 'x86_64' },
      resource_slots: { cpu: 4, mem: '16gb', gpu: 1 },
      environ: { LOG_LEVEL: 'INFO', MAX_BATCH_SIZE: '32' },
    },
  },
  {
    name: 'the variant name ignores case and _ vs -',
    input: { runtime_variant: 'VLLM', model_path: folder('documented-example'), request: {} },
    expected: { runtime_variant: 'vllm', resource_slots: { cpu: 8, mem: '16gb', gpu: 2 } },
  },
  {
    name: 'every field a definition can carry, variant scalars and tables over the root',
    input: { runtime_variant: 'vllm', model_path: 'full-vllm', request: {} },
    expected: {
      model: 'meta-llama/Llama-3.1-8B-Instruct',
      model_name: 'llama-8b',
      port: 8200,
      extra_args: ['--max-model-len', '4096', '--dtype', 'auto'],
      environment: { image: 'vllm/vllm-openai:v0.6.0', architecture: 'x86_64' },
      resource_slots: { cpu: 4, mem: '1.5GiB', gpu: 1 },
      environ: { HF_HOME: '/models/.cache', MAX_NUM_SEQS: '64', ENABLE_PREFIX_CACHING: 'true' },
      health_check: {
        path: '/health',
        interval_s: 10,
        timeout_s: 3,
        healthy_threshold: 2,
        unhealthy_threshold: 4,
        startup_timeout_s: 1200,
      },
    },
  },
  {
    name: 'a section for sglang overrides only what it names',
    input: { runtime_variant: 'sglang', model_path: 'full-vllm', request: {} },
    expected: {
      port: 8100,
      model_name: 'llama-8b-sglang',
      resource_slots: { cpu: 4, mem: '512m', gpu: 1 },
    },
  },
  {
    name: 'request scalars, shorthands and environ keys win; other keys stay',
    input: {
      runtime_variant: 'vllm',
      model_path: 'full-vllm',
      request: {
        image: 'mine:1',
        port: 9999,
        environ: { HF_HOME: '/x', NEW: 1 },
        command: 'vllm serve "/models/my model" --port {port}',
        health_check: { path: '/v1/models' },
      },
    },
    expected: {
      port: 9999,
      environment: { image: 'mine:1', architecture: 'x86_64' },
      environ: { HF_HOME: '/x', MAX_NUM_SEQS: '64', ENABLE_PREFIX_CACHING: 'true', NEW: '1' },
      command: ['vllm', 'serve', '/models/my model', '--port', '{port}'],
      health_check: {
        path: '/v1/models',
        interval_s: 10,
        timeout_s: 3,
        healthy_threshold: 2,
        unhealthy_threshold: 4,
        startup_timeout_s: 1200,
      },
    },
  },
  {
    name: 'a cmd definition keeps {port} and respects quotes',
    input: { runtime_variant: 'cmd', model_path: 'cmd-echo', request: {} },
    expected: {
      command: ['python3', '-m', 'http.server', '{port}', '--bind', '127.0.0.1'],
      port: 9000,
      resource_slots: { cpu: 0.5, mem: '256m', gpu: 0 },
      health_check: { path: '/', interval_s: 2 },
      environ: { PYTHONUNBUFFERED: '1' },
    },
  },
  {
    name: 'a custom definition takes everything from its section',
    input: { runtime_variant: 'custom', model_path: 'custom-full', request: {} },
    expected: {
      command: ['/opt/server/bin/serve', '--listen', '0.0.0.0:{port}', '--model', '/models/m'],
      port: 7070,
      environment: { image: 'registry.example.com/acme/server:1.2' },
      resource_slots: { cpu: 2, mem: '4g', gpu: 0.5 },
      health_check: { path: '/ready', timeout_s: 1 },
    },
  },
  {
    name: 'without a definition file the request supplies everything',
    input: {
      runtime_variant: 'cmd',
      model_path: 'no-definition',
      request: { command: ['node', 'server.js'], resource_slots: { mem: '2g' } },
    },
    expected: {
      model_path: folder('no-definition'),
      command: ['node', 'server.js'],
      resource_slots: { cpu: 1, mem: '2g', gpu: 0 },
    },
    warnings: ['no service-definition.toml in the model folder; the request supplies everything'],
  },
  {
    name: 'model_path may name the .toml file; its folder is the model folder',
    input: { runtime_variant: 'cmd', model_path: 'model-file/serve.toml', request: {} },
    expected: {
      model_path: folder('model-file'),
      command: ['node', 'server.js', '--port', '{port}'],
    },
  },
  {
    name: 'an inline TOML definition replaces the folder file',
    input: {
      runtime_variant: 'cmd',
      model_path: 'documented-example',
      service_definition: 'command = "serve {port}"\n[cmd.resource_slots]\nmem = "3g"\n',
      request: {},
    },
    expected: {
      command: ['serve', '{port}'],
      resource_slots: { cpu: 1, mem: '3g', gpu: 0 },
      environ: {},
    },
  },
  {
    name: 'an inline parsed definition works without a model folder',
    input: {
      runtime_variant: 'vllm',
      service_definition: { model: 'org/m', vllm: { environ: { A: 'b' } } },
      request: {},
    },
    expected: { model: 'org/m', environ: { A: 'b' } },
  },
  {
    name: 'memory given in bytes below 1 MiB is accepted with a warning',
    input: { runtime_variant: 'cmd', request: { command: 'x', resource_slots: { mem: 16 } } },
    expected: { resource_slots: { cpu: 1, mem: 16, gpu: 0 } },
    warnings: ['resource_slots.mem = 16 is read as bytes; write "16g" for 16 GiB'],
  },
];

describe('good definitions', () => {
  it.each(good)('$name', async ({ input, expected, warnings }) => {
    const result = await generateRevision(input, opts);
    expect(result.revision).toMatchObject(expected);
    expect(result.warnings).toEqual(warnings ?? []);
  });
});

interface BadCase {
  name: string;
  input: RevisionInput;
  code?: 'validation' | 'invalid_toml';
  /** Every detail, in order, as `path: message`. */
  details: (string | RegExp)[];
}

const bad: BadCase[] = [
  {
    name: 'a TOML syntax error names file, line and column',
    input: { runtime_variant: 'vllm', model_path: 'broken-syntax', request: {} },
    code: 'invalid_toml',
    details: ['service-definition.toml:3:12: TOML syntax error: Unterminated string'],
  },
  {
    name: 'every schema mistake in a file is reported, with the field path and what was expected',
    input: { runtime_variant: 'vllm', model_path: 'broken-schema', request: {} },
    details: [
      'resource_slots.cpu: expected a positive number, got "lots" (in service-definition.toml)',
      'resource_slots.mem: expected a memory size like "16g", "512m" or "1.5GiB", got "16 gigs" (in service-definition.toml)',
      'resource_slots.gpu: expected a number >= 0, got -1 (in service-definition.toml)',
      'environ.1BAD: not a valid environment variable name (letters, digits and "_", not starting with a digit) (in service-definition.toml)',
      'health_check.path: expected an HTTP path starting with "/", got "health" (in service-definition.toml)',
      'health_check.unhealthy_threshold: expected a positive integer, got 1.5 (in service-definition.toml)',
      'port: expected an integer port between 1 and 65535, got 0 (in service-definition.toml)',
      'resource_slot: unknown key (did you mean "resource_slots"?) (in service-definition.toml)',
      'vllm.environment.image: expected a non-empty string, got "" (in service-definition.toml)',
      'vllm.comand: unknown key (did you mean "command"?) (in service-definition.toml)',
    ],
  },
  {
    name: 'zero cpu and zero memory are refused',
    input: { runtime_variant: 'cmd', model_path: 'broken-zero', request: {} },
    details: [
      'resource_slots.cpu: expected a positive number, got 0 (in service-definition.toml)',
      'resource_slots.mem: expected a memory size above zero, got "0g" (in service-definition.toml)',
    ],
  },
  {
    name: 'wrong types are named, including TOML dates and nested tables',
    input: { runtime_variant: 'cmd', model_path: 'broken-types', request: {} },
    details: [
      'resource_slots: expected a table, got 5 (in service-definition.toml)',
      'environ.NESTED: expected a string (or a number or boolean, turned into a string), got a table (in service-definition.toml)',
      'command: expected a command string or an array of strings, got 5 (in service-definition.toml)',
      'model_name: expected a non-empty string, got 42 (in service-definition.toml)',
      /^created: unknown key; allowed here: environment, resource_slots, .*, vllm, huggingface-tgi, sglang, nim, modular-max, cmd, custom \(in service-definition.toml\)$/,
    ],
  },
  {
    name: 'a command string that cannot be split says why',
    input: { runtime_variant: 'cmd', model_path: 'broken-command', request: {} },
    details: [
      'command: cannot split into arguments: unterminated single quote at character 12 (in service-definition.toml)',
    ],
  },
  {
    name: 'a missing file says which required fields the request lacks',
    input: { runtime_variant: 'cmd', model_path: 'no-definition', request: {} },
    details: [
      'command: required for the cmd variant: the command to run, e.g. "python -m http.server {port}"; no service-definition.toml was found, so the request must give it',
    ],
  },
  {
    name: 'custom lists both missing fields',
    input: { runtime_variant: 'custom', request: {} },
    details: [
      'command: required for the custom variant; the request must give it',
      'port: required for the custom variant: the port the command listens on; the request must give it',
    ],
  },
  {
    name: 'nim needs an image',
    input: { runtime_variant: 'nim', model_path: 'cmd-echo', request: {} },
    details: [
      /^environment\.image: required for the nim variant: .*; set it in service-definition.toml \(at the root or in \[nim\]\) or in the request$/,
    ],
  },
  {
    name: 'vllm needs something to load when there is no model folder',
    input: { runtime_variant: 'vllm', request: {} },
    details: [
      /^model: required for the vllm variant: give a model folder \(model_path\), "model" \(hub id or path\) or "model_name"/,
    ],
  },
  {
    name: 'an unknown runtime variant lists the valid ones, alongside the other problems',
    input: { runtime_variant: 'vlm', request: { resource_slots: { cpu: 'lots' } } },
    details: [
      'runtime_variant: unknown runtime variant "vlm"; valid variants: vllm, huggingface-tgi, sglang, nim, modular-max, cmd, custom',
      'resource_slots.cpu: expected a positive number, got "lots"',
    ],
  },
  {
    name: 'request mistakes carry no file name, and unknown request fields are refused',
    input: {
      runtime_variant: 'cmd',
      request: { command: 'x', gpus: 2, resource_slots: { mem: '1.2.3g', gpu: -1 } },
    },
    details: [
      'resource_slots.mem: expected a memory size like "16g", "512m" or "1.5GiB", got "1.2.3g"',
      'resource_slots.gpu: expected a number >= 0, got -1',
      'gpus: unknown key; allowed here: environment, resource_slots, environ, health_check, command, extra_args, port, model, model_name, image, architecture, weight',
    ],
  },
  {
    name: 'malformed memory strings are refused',
    input: {
      runtime_variant: 'cmd',
      request: { command: 'x', resource_slots: { mem: '16 gigs' } },
    },
    details: [
      'resource_slots.mem: expected a memory size like "16g", "512m" or "1.5GiB", got "16 gigs"',
    ],
  },
  {
    name: 'negative memory is refused',
    input: {
      runtime_variant: 'cmd',
      request: { command: 'x', resource_slots: { mem: '-1g', cpu: -2 } },
    },
    details: [
      'resource_slots.cpu: expected a positive number, got -2',
      'resource_slots.mem: expected a memory size like "16g", "512m" or "1.5GiB", got "-1g"',
    ],
  },
  {
    name: 'a shorthand that contradicts environment in the same layer is refused',
    input: {
      runtime_variant: 'cmd',
      request: { command: 'x', image: 'a', environment: { image: 'b' } },
    },
    details: ['image: conflicts with environment.image ("b") in the same layer; give one'],
  },
  {
    name: 'a request that is not an object is refused',
    input: { runtime_variant: 'cmd', request: 'command=x' as unknown as Record<string, unknown> },
    details: ['request: expected an object with the revision fields'],
  },
  {
    name: 'an inline definition that is not TOML is an invalid_toml error',
    input: { runtime_variant: 'cmd', service_definition: 'command = \n', request: {} },
    code: 'invalid_toml',
    details: [/^service definition:1:\d+: TOML syntax error: /],
  },
];

describe('broken definitions and requests', () => {
  it.each(bad)('$name', async ({ input, code, details }) => {
    const err = await failure(input);
    expect(err.code).toBe(code ?? 'validation');
    expect(err.status).toBe(400);
    const got = lines(err.details);
    expect(got).toHaveLength(details.length);
    details.forEach((want, i) => {
      if (typeof want === 'string') expect(got[i]).toBe(want);
      else expect(got[i]).toMatch(want);
    });
    expect(err.message).not.toMatch(/\n\s+at /);
  });
});
