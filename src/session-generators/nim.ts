/**
 * NVIDIA NIM for LLMs: a container image that carries its own server.
 * - Launch: the image's start script `/opt/nim/start_server.sh` (older images name it
 *   `start-server.sh`; give `command` to override). Port, model and served name come from the
 *   environment (`NIM_SERVER_PORT`, default 8000; `NIM_MODEL_PATH`; `NIM_SERVED_MODEL_NAME`):
 *   https://docs.nvidia.com/nim/large-language-models/latest/reference/environment-variables.html
 * - Readiness: `GET /v1/health/ready`, 200 once the model is loaded, 503 before
 *   (`/v1/health/live` only says the container runs):
 *   https://docs.nvidia.com/nim/large-language-models/reference/api-reference/health-ready
 * The port is fixed inside the container (the environment cannot carry `{port}`), so NIM
 * needs an image and a container backend.
 */
import type { SessionGenerator } from './generator.ts';
import { buildSession, requireField } from './generator.ts';

const defaults = { port: 8000, healthPath: '/v1/health/ready' };

export const nimGenerator: SessionGenerator = {
  variant: 'nim',
  summary: 'NVIDIA NIM container (image required)',
  defaults,
  validate: (revision) =>
    requireField(
      revision.environment.image !== undefined,
      'environment.image',
      'nim',
      'a NIM runs from its container image (e.g. nvcr.io/nim/meta/llama-3.1-8b-instruct:latest)',
    ),
  generate(revision) {
    const port = revision.port ?? defaults.port;
    const environ: Record<string, string> = { NIM_SERVER_PORT: String(port) };
    if (revision.model) environ.NIM_MODEL_PATH = revision.model;
    if (revision.model_name) environ.NIM_SERVED_MODEL_NAME = revision.model_name;
    return buildSession(revision, defaults, ['/opt/nim/start_server.sh'], environ);
  },
};
