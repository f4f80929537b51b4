/**
 * Everything from the definition: command, port, image, environment and health check are
 * taken as written; nothing is added. Only the readiness path has a default (`/health`).
 * The contract is ours (../../docs/definitions.md); there is no upstream runtime to cite.
 */
import type { SessionGenerator } from './generator.ts';
import { buildSession, requireField } from './generator.ts';

const defaults = { port: 8000, healthPath: '/health' };

export const customGenerator: SessionGenerator = {
  variant: 'custom',
  summary: 'fully user-defined: command and port come from the definition',
  defaults,
  validate: (revision) => [
    ...requireField(revision.command !== undefined, 'command', 'custom'),
    ...requireField(
      revision.port !== undefined,
      'port',
      'custom',
      'the port the command listens on',
    ),
  ],
  generate: (revision) => buildSession(revision, defaults, []),
};
