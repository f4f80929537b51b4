/**
 * Modular MAX serving.
 * - Launch: `max serve --model <hub id or local path> --port P`; it serves on port 8000 by default:
 *   https://docs.modular.com/max/cli/serve.md and https://docs.modular.com/max/get-started
 * - Readiness: `GET /v1/health` (registered with the `openai` API type, the default):
 *   https://docs.modular.com/max/cli/serve.md
 */
import { modelServerGenerator } from './generator.ts';

export const modularMaxGenerator = modelServerGenerator({
  variant: 'modular-max',
  summary: 'Modular MAX server (max serve)',
  defaults: { port: 8000, healthPath: '/v1/health' },
  argv: (model) => ['max', 'serve', '--model', model, '--port', '{port}'],
});
