/**
 * vLLM's OpenAI-compatible server.
 * - Launch: `vllm serve <model> [--host H] [--port P]`, port default 8000, `--served-model-name`:
 *   https://www.mintlify.com/vllm-project/vllm/api/cli/serve and
 *   https://docs.vllm.ai/en/latest/configuration/serve_args.html
 * - Readiness: `GET /health`, 200 when the engine is alive, 503 when it is dead:
 *   https://docs.vllm.ai/en/latest/api/vllm/entrypoints/serve/instrumentator/health/
 */
import { hostPortAndNameFlags, modelServerGenerator } from './generator.ts';

export const vllmGenerator = modelServerGenerator({
  variant: 'vllm',
  summary: 'vLLM OpenAI-compatible server (vllm serve)',
  defaults: { port: 8000, healthPath: '/health' },
  argv: (model, revision) => ['vllm', 'serve', model, ...hostPortAndNameFlags(revision)],
});
