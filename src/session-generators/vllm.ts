/**
 * vLLM's OpenAI-compatible server.
 * - Launch: `vllm serve <model> [--host H] [--port P]`, port default 8000, `--served-model-name`:
 *   https://www.mintlify.com/vllm-project/vllm/api/cli/serve and
 *   https://docs.vllm.ai/en/latest/configuration/serve_args.html
 * - Readiness: `GET /health`, 200 when the engine is alive, 503 when it is dead:
 *   https://docs.vllm.ai/en/latest/api/vllm/entrypoints/serve/instrumentator/health/
 */
import type { SessionGenerator } from './generator.ts';
import { buildSession, modelSource, requireModel, servedModelName } from './generator.ts';

const defaults = { port: 8000, healthPath: '/health' };

export const vllmGenerator: SessionGenerator = {
  variant: 'vllm',
  summary: 'vLLM OpenAI-compatible server (vllm serve)',
  defaults,
  validate: (revision) => (revision.command ? [] : requireModel(revision, 'vllm')),
  generate(revision) {
    const name = servedModelName(revision);
    const argv = [
      'vllm',
      'serve',
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
