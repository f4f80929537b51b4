/**
 * SGLang runtime.
 * - Launch: `python3 -m sglang.launch_server --model-path <model> --host H --port P`, port
 *   default 30000: https://mintlify.com/sgl-project/sglang/quickstart
 * - Readiness: `GET /health` (`/health_generate` also runs a generation):
 *   https://docs.sglang.io/docs/basic_usage/native_api.md
 */
import { hostPortAndNameFlags, modelServerGenerator } from './generator.ts';

export const sglangGenerator = modelServerGenerator({
  variant: 'sglang',
  summary: 'SGLang server (python3 -m sglang.launch_server)',
  defaults: { port: 30000, healthPath: '/health' },
  argv: (model, revision) => [
    'python3',
    '-m',
    'sglang.launch_server',
    '--model-path',
    model,
    ...hostPortAndNameFlags(revision),
  ],
});
