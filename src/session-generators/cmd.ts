/**
 * Any command that serves HTTP. The user's argv is run as given; `{port}` in it is replaced
 * by the replica's port and `PORT` is set (both by the backend). Port default 8000 and
 * readiness `GET /health` are Flotilla conventions, not a runtime's; override them with
 * `port` and `[health_check] path`. No upstream documentation to cite: the contract is ours
 * (../../docs/definitions.md).
 */
import type { SessionGenerator } from './generator.ts';
import { buildSession, requireField } from './generator.ts';

const defaults = { port: 8000, healthPath: '/health' };

export const cmdGenerator: SessionGenerator = {
  variant: 'cmd',
  summary: 'any command serving HTTP on {port} / $PORT',
  defaults,
  validate: (revision) =>
    requireField(
      revision.command !== undefined,
      'command',
      'cmd',
      'the command to run, e.g. "python -m http.server {port}"',
    ),
  generate: (revision) => buildSession(revision, defaults, []),
};
