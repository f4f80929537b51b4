/**
 * SGLang runtime.
 * - Launch: `python3 -m sglang.launch_server --model-path <model> --host H --port P`, port
 *   default 30000: https://mintlify.com/sgl-project/sglang/quickstart
 * - Readiness: `GET /health` (`/health_generate` also runs a generation):
 *   https://docs.sglang.io/docs/basic_usage/native_api.md
 */
import type { SessionGenerator } from './generator.ts';
import { buildSession, modelSource, requireModel, servedModelName } from './generator.ts';

const defaults = { port: 30000, healthPath: '/health' };

export const sglangGenerator: SessionGenerator = {
  variant: 'sglang',
  summary: 'SGLang server (python3 -m sglang.launch_server)',
  defaults,
  validate: (revision) => (revision.command ? [] : requireModel(revision, 'sglang')),
  generate(revision) {
    const name = servedModelName(revision);
    const argv = [
      'python3',
      '-m',
      'sglang.launch_server',
      '--model-path',
      modelSource(revision) ?? '',
      '--host',
      '0.0.0.0',
      '--port',
      '{port}',
      ...(name ? ['--served-model-name', name] : []),
    ];
    return buildSession(revision, defaults, argv);
  },
};
