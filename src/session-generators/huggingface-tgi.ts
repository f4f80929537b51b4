/**
 * Hugging Face Text Generation Inference.
 * - Launch: `text-generation-launcher --model-id <model> --hostname H --port P`; the launcher's
 *   own port default is 3000 but the official image listens on 80 (`docker run -p 8080:80`), so
 *   80 is the default container port here:
 *   https://huggingface.co/docs/text-generation-inference/quicktour and
 *   https://huggingface.co/docs/text-generation-inference/en/basic_tutorials/launcher
 * - Readiness: `GET /health` (router health route, see the OpenAPI docs at
 *   https://huggingface.github.io/text-generation-inference).
 */
import { modelServerGenerator } from './generator.ts';

export const huggingfaceTgiGenerator = modelServerGenerator({
  variant: 'huggingface-tgi',
  summary: 'Hugging Face Text Generation Inference (text-generation-launcher)',
  defaults: { port: 80, healthPath: '/health' },
  argv: (model) => [
    'text-generation-launcher',
    '--model-id',
    model,
    '--hostname',
    '0.0.0.0',
    '--port',
    '{port}',
  ],
});
