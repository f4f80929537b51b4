/**
 * Modular MAX serving.
 * - Launch: `max serve --model <hub id or local path> --port P`; it serves on port 8000 by default:
 *   https://docs.modular.com/max/cli/serve.md and https://docs.modular.com/max/get-started
 * - Readiness: `GET /v1/health` (registered with the `openai` API type, the default):
 *   https://docs.modular.com/max/cli/serve.md
 */
import type { SessionGenerator } from './generator.ts';
import { buildSession, modelSource, requireModel } from './generator.ts';

const defaults = { port: 8000, healthPath: '/v1/health' };

export const modularMaxGenerator: SessionGenerator = {
  variant: 'modular-max',
  summary: 'Modular MAX server (max serve)',
  defaults,
  validate: (revision) => (revision.command ? [] : requireModel(revision, 'modular-max')),
  generate(revision) {
    const argv = ['max', 'serve', '--model', modelSource(revision) ?? '', '--port', '{port}'];
    return buildSession(revision, defaults, argv);
  },
};
