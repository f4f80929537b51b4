/**
 * The HTTP API: a thin shell over the embedded API (`createFlotilla`). Request bodies are
 * checked against the zod schemas of src/domain/deployment-request.ts (the same ones the
 * embedded API parses with, and the ones /v1/openapi.json documents), then handed on as the
 * caller sent them. `buildApp` never listens; tests use `app.inject()`, `serve` listens.
 */
import fastifySwagger from '@fastify/swagger';
import Fastify, {
  type FastifyBaseLogger,
  type FastifyInstance,
  type FastifyTypeProvider,
  LogController,
} from 'fastify';
import { jsonSchemaTransform, jsonSchemaTransformObject } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { type ConnectionTimeouts, fastifyTimeouts } from '../domain/connection-timeouts.ts';
import {
  type DeploymentRequest,
  type DeploymentUpdate,
  deploymentRequestSchema,
  deploymentUpdateSchema,
  endpointRequestSchema,
  scaleRequestSchema,
  scalingGroupSchema,
} from '../domain/deployment-request.ts';
import {
  errorBody,
  FlotillaError,
  notReady,
  routeNotFound,
  shuttingDown,
  validationError,
  validationErrors,
} from '../domain/errors.ts';
import { redactRevisionAndSession } from '../domain/redaction.ts';
import { zodDetails } from '../domain/validation.ts';
import type { Flotilla } from '../index.ts';
import { bearerChecker } from './auth.ts';
import { createErrorHandler } from './error-handler.ts';
import { inspectorRoutes } from './inspector-routes.ts';
import type { MetricsRegistry } from './metrics.ts';
import {
  deploymentListSchema,
  deploymentViewSchema,
  endpointListSchema,
  endpointPutSchema,
  endpointViewSchema,
  errorSchema,
  eventsQuerySchema,
  eventsSchema,
  idParamsSchema,
  listQuerySchema,
  logsQuerySchema,
  nameParamsSchema,
  previewSchema,
  readySchema,
  scalingGroupViewSchema,
} from './schemas.ts';

export interface AppDeps {
  flotilla: Flotilla;
  /** With a token, every /v1 route needs `Authorization: Bearer <token>`. */
  token?: string | undefined;
  /** Largest accepted request body in bytes. Default 1 MiB. */
  bodyLimit?: number | undefined;
  /** The process's metrics; buildApp attaches it to `flotilla` and detaches on close. */
  metrics: MetricsRegistry;
  /** A pino logger; default: no logging. */
  logger?: FastifyBaseLogger | undefined;
  /**
   * Liveness with detail for /health (`serve` gives the proxy's load and the runtime's fatal
   * failure); 500 when `ok` is false. Default: `{"status":"ok"}`, always 200.
   */
  health?: (() => { ok: boolean; problems: string[] } & Record<string, unknown>) | undefined;
  /** Limits on client connections; defaults in API_CONNECTION_TIMEOUTS. */
  timeouts?: Partial<ConnectionTimeouts> | undefined;
}

/**
 * Requests are typed from the zod schemas; replies are not (response schemas document the
 * API, and a unit test checks real views against them), so runtime interfaces need no casts.
 */
interface ZodRequestTypeProvider extends FastifyTypeProvider {
  validator: this['schema'] extends z.ZodType ? z.output<this['schema']> : unknown;
  serializer: unknown;
}

export const DEFAULT_BODY_LIMIT = 1024 * 1024;

/** Longest path parameter the router hands on (longer ones: 414 `uri_too_long`). */
export const MAX_PARAM_LENGTH = 1024;

const PART_PREFIX: Record<string, string> = {
  body: '',
  params: '',
  querystring: '',
  headers: 'headers.',
};

/**
 * Validates with zod. Bodies are passed on unchanged (the embedded API parses them again and
 * stores what the caller sent, without zod defaults); params and query strings are coerced.
 */
function zodValidatorCompiler({ schema, httpPart }: { schema: unknown; httpPart?: string }) {
  const s = schema as z.ZodType;
  const prefix = PART_PREFIX[httpPart ?? 'body'] ?? '';
  return (data: unknown) => {
    if (httpPart === 'body' && (data === null || data === undefined)) {
      const message = 'expected a JSON object body (Content-Type: application/json)';
      return { error: validationError('(body)', message, message) };
    }
    const r = s.safeParse(data, { reportInput: true });
    if (r.success) return { value: httpPart === 'body' ? data : r.data };
    return { error: validationErrors(zodDetails(r.error, prefix)) };
  };
}

const errors = (...codes: number[]) =>
  Object.fromEntries(codes.map((c) => [c, errorSchema])) as Record<number, typeof errorSchema>;

const isV1 = (url: string | undefined) => url === '/v1' || url?.startsWith('/v1/') === true;

export function buildApp(deps: AppDeps): FastifyInstance {
  const { flotilla, metrics } = deps;
  const bodyLimit = deps.bodyLimit ?? DEFAULT_BODY_LIMIT;
  const handleError = createErrorHandler(bodyLimit);
  const app = Fastify({
    bodyLimit,
    // A parameter longer than any valid id reaches validation (400 at its field) instead of
    // the router's own 414; past this the router answers, through `frameworkErrors`.
    routerOptions: { maxParamLength: MAX_PARAM_LENGTH },
    ...(deps.logger ? { loggerInstance: deps.logger } : { logger: false }),
    // One line per request from the onResponse hook below instead of Fastify's two.
    logController: new LogController({ disableRequestLogging: true }),
    // Fastify's own 503 while closing has its own body; the onRequest hook below answers
    // in the error shape instead.
    return503OnClosing: false,
    // The router's errors (bad percent-encoding, a parameter too long) would otherwise be
    // written by Fastify in its own shape, bypassing the error handler.
    frameworkErrors: (err, req, reply) => handleError(err, req, reply),
    ...fastifyTimeouts(deps.timeouts),
  });

  app.setValidatorCompiler(zodValidatorCompiler);
  // Responses are documented by zod schemas but serialized as they are.
  app.setSerializerCompiler(() => (data) => JSON.stringify(data));
  app.setErrorHandler(handleError);
  app.setNotFoundHandler((req, reply) => {
    const err = routeNotFound(req.method, req.url.split('?')[0] ?? '/');
    return reply.status(err.status).send(errorBody(err));
  });

  let closing = false;
  app.addHook('preClose', async () => {
    closing = true;
  });
  app.addHook('onRequest', async (_req, reply) => {
    if (!closing) return;
    reply.header('connection', 'close');
    throw shuttingDown('the API');
  });

  // An empty JSON body (DELETE with a Content-Type) is no body, not a syntax error.
  // JSON only: a text/plain body is 415, not a string that fails validation.
  app.removeContentTypeParser('text/plain');
  const defaultJson = app.getDefaultJsonParser('error', 'error');
  app.removeContentTypeParser('application/json');
  app.addContentTypeParser('application/json', { parseAs: 'string' }, (req, body, done) => {
    if (body === '' || (typeof body === 'string' && body.trim() === '')) done(null, undefined);
    else defaultJson(req, body as string, done);
  });

  if (deps.token) {
    const check = bearerChecker(deps.token);
    app.addHook('onRequest', async (req) => {
      // The matched route too, not only the raw URL: the router decodes percent-encoded
      // letters, so `/%761/deployments` reaches /v1/deployments without the /v1/ prefix.
      if (isV1(req.url) || isV1(req.routeOptions.url)) check(req.headers.authorization);
    });
  }
  app.addHook('onResponse', async (req, reply) => {
    const quiet = req.method === 'GET' || req.method === 'HEAD';
    const line = {
      method: req.method,
      url: req.url,
      status: reply.statusCode,
      ms: Math.round(reply.elapsedTime),
    };
    if (reply.statusCode >= 500) req.log.warn(line, 'request');
    else if (quiet) req.log.debug(line, 'request');
    else req.log.info(line, 'request');
  });

  const detach = metrics.attach(flotilla);
  app.addHook('onClose', async () => detach());

  void app.register(fastifySwagger, {
    openapi: {
      openapi: '3.1.0',
      info: {
        title: 'Flotilla',
        description:
          'Control plane and traffic router for model-serving deployments. Errors are `{"error": {"code", "message", "details": [{"path", "message"}]}}`.',
        version: '1',
      },
      components: {
        securitySchemes: { bearer: { type: 'http', scheme: 'bearer' } },
      },
      ...(deps.token ? { security: [{ bearer: [] }] } : {}),
    },
    transform: jsonSchemaTransform,
    transformObject: jsonSchemaTransformObject,
  });

  void app.register(async (root) => {
    const r = root.withTypeProvider<ZodRequestTypeProvider>();

    // ------------------------------------------------------------ process endpoints
    r.get(
      '/health',
      {
        schema: {
          tags: ['process'],
          summary: 'Liveness: 200 while the process can serve its role, 500 when it cannot',
          response: {
            200: z.looseObject({ status: z.literal('ok') }),
            500: z.looseObject({ status: z.literal('failing') }).extend(errorSchema.shape),
          },
        },
      },
      async (_req, reply) => {
        if (!deps.health) return { status: 'ok' as const };
        const { ok, ...report } = deps.health();
        if (ok) return { ...report, status: 'ok' as const };
        const message = `cannot serve: ${report.problems.join('; ')}`;
        return reply.status(500).send({
          ...report,
          status: 'failing' as const,
          ...errorBody(
            new FlotillaError('internal', message, {
              details: report.problems.map((m) => ({ path: 'health', message: m })),
            }),
          ),
        });
      },
    );
    r.get(
      '/ready',
      {
        schema: {
          tags: ['process'],
          summary: 'Readiness: 503 naming what is missing until restored and dependencies answer',
          response: { 200: readySchema, 503: readySchema.extend(errorSchema.shape) },
        },
      },
      async (_req, reply) => {
        const state = await flotilla.ready();
        if (state.ready) return state;
        return reply
          .status(503)
          .header('retry-after', '1')
          .send({ ...state, ...errorBody(notReady(state.missing)) });
      },
    );
    r.get('/metrics', { schema: { hide: true } }, async (_req, reply) => {
      const text = await metrics.text();
      return reply.type(metrics.contentType).send(text);
    });
    r.get('/v1/openapi.json', { schema: { hide: true } }, async () => app.swagger());

    // ------------------------------------------------------------ deployments
    const tags = ['deployments'];
    r.post(
      '/v1/deployments',
      {
        schema: {
          tags,
          summary: 'Create a deployment (answers with it in PENDING)',
          body: deploymentRequestSchema,
          response: { 201: deploymentViewSchema, ...errors(400, 401, 403, 409, 413, 415, 422) },
        },
      },
      async (req, reply) => {
        const view = await flotilla.deploy(req.body as DeploymentRequest);
        metrics.deploymentCreated();
        return reply
          .status(201)
          .header('location', `/v1/deployments/${view.id}`)
          .send({ ...view, load: flotilla.proxy?.status(view.name) ?? null });
      },
    );
    r.get(
      '/v1/deployments',
      {
        schema: {
          tags,
          summary: 'List deployments, oldest first',
          querystring: listQuerySchema,
          response: { 200: deploymentListSchema, ...errors(400, 401, 403) },
        },
      },
      async (req) => ({
        items: await flotilla.list({ includeDeleted: req.query.include_deleted ?? false }),
      }),
    );
    r.get(
      '/v1/deployments/:id',
      {
        schema: {
          tags,
          summary: 'One deployment: state, replicas, routes, why it is not RUNNING, load',
          params: idParamsSchema,
          response: { 200: deploymentViewSchema, ...errors(401, 403, 404) },
        },
      },
      async (req) => {
        const view = await flotilla.get(req.params.id);
        return { ...view, load: flotilla.proxy?.status(view.name) ?? null };
      },
    );
    r.patch(
      '/v1/deployments/:id',
      {
        schema: {
          tags,
          summary: 'A new revision, rolled out replica by replica',
          params: idParamsSchema,
          body: deploymentUpdateSchema,
          response: { 200: deploymentViewSchema, ...errors(400, 401, 403, 404, 409, 413, 415) },
        },
      },
      async (req) => {
        const view = await flotilla.update(req.params.id, (req.body ?? {}) as DeploymentUpdate);
        metrics.deploymentUpdated();
        return view;
      },
    );
    r.post(
      '/v1/deployments/:id/scale',
      {
        schema: {
          tags,
          summary: 'Set the replica count',
          params: idParamsSchema,
          body: scaleRequestSchema,
          response: { 200: deploymentViewSchema, ...errors(400, 401, 403, 404, 409, 413, 415) },
        },
      },
      async (req) => {
        const before = await flotilla.get(req.params.id);
        const { replicas } = req.body as { replicas: number };
        const view = await flotilla.scale(before.id, replicas);
        if (replicas !== before.target_replicas) {
          metrics.scalingEvent(replicas > before.target_replicas ? 'up' : 'down', 'api');
        }
        return view;
      },
    );
    r.delete(
      '/v1/deployments/:id',
      {
        schema: {
          tags,
          summary: 'Delete a deployment (answers 202; it goes DESTROYING -> TERMINATED)',
          params: idParamsSchema,
          response: { 202: deploymentViewSchema, ...errors(401, 403, 404, 409) },
        },
      },
      async (req, reply) => {
        const view = await flotilla.destroy(req.params.id);
        metrics.deploymentDeleted();
        return reply.status(202).send(view);
      },
    );
    r.get(
      '/v1/deployments/:id/events',
      {
        schema: {
          tags,
          summary: 'Transition history, oldest first, paginated by `after`',
          params: idParamsSchema,
          querystring: eventsQuerySchema,
          response: { 200: eventsSchema, ...errors(400, 401, 403, 404) },
        },
      },
      async (req) =>
        flotilla.events(req.params.id, {
          ...(req.query.after !== undefined ? { after: req.query.after } : {}),
          ...(req.query.limit !== undefined ? { limit: req.query.limit } : {}),
        }),
    );
    r.get(
      '/v1/deployments/:id/logs',
      {
        schema: {
          tags,
          summary: "The tail of the replicas' output (text/plain)",
          params: idParamsSchema,
          querystring: logsQuerySchema,
          response: { 200: z.string(), ...errors(400, 401, 403, 404) },
        },
      },
      async (req, reply) => {
        const text = await flotilla.logs(req.params.id, {
          ...(req.query.replica ? { replica: req.query.replica } : {}),
          ...(req.query.previous === 'true' ? { previous: true } : {}),
          ...(req.query.tail_bytes ? { tailBytes: req.query.tail_bytes } : {}),
        });
        return reply
          .type('text/plain; charset=utf-8')
          .serializer((s: string) => s)
          .send(text);
      },
    );
    r.post(
      '/v1/revisions/preview',
      {
        schema: {
          tags: ['revisions'],
          summary: 'Merge and validate a deployment request with no side effects',
          body: deploymentRequestSchema,
          response: { 200: previewSchema, ...errors(400, 401, 403, 413, 415) },
        },
      },
      async (req) =>
        redactRevisionAndSession(await flotilla.previewRevision(req.body as DeploymentRequest)),
    );

    // ------------------------------------------------------------ scaling groups
    r.get(
      '/v1/scaling-groups/:name',
      {
        schema: {
          tags: ['scaling-groups'],
          summary: 'A scaling group (defaults when it was never stored)',
          params: nameParamsSchema,
          response: { 200: scalingGroupViewSchema, ...errors(400, 401, 403) },
        },
      },
      async (req) => flotilla.getScalingGroup(req.params.name),
    );
    r.put(
      '/v1/scaling-groups/:name',
      {
        schema: {
          tags: ['scaling-groups'],
          summary: 'Create or change a scaling group; omitted fields keep their value',
          params: nameParamsSchema,
          body: scalingGroupSchema,
          response: { 200: scalingGroupViewSchema, ...errors(400, 401, 403, 413, 415) },
        },
      },
      async (req) => flotilla.putScalingGroup(req.params.name, req.body),
    );

    // ------------------------------------------------------------ endpoints
    const etags = ['endpoints'];
    r.post(
      '/v1/endpoints',
      {
        schema: {
          tags: etags,
          summary: 'Create an endpoint that splits traffic across deployments by weight',
          body: endpointRequestSchema,
          response: { 201: endpointViewSchema, ...errors(400, 401, 403, 409, 413, 415) },
        },
      },
      async (req, reply) => {
        const rec = await flotilla.createEndpoint(req.body);
        return reply.status(201).header('location', `/v1/endpoints/${rec.name}`).send(rec);
      },
    );
    r.get(
      '/v1/endpoints',
      {
        schema: {
          tags: etags,
          summary: 'List endpoints',
          response: { 200: endpointListSchema, ...errors(401, 403) },
        },
      },
      async () => ({ items: await flotilla.listEndpoints() }),
    );
    r.get(
      '/v1/endpoints/:name',
      {
        schema: {
          tags: etags,
          params: nameParamsSchema,
          response: { 200: endpointViewSchema, ...errors(400, 401, 403, 404) },
        },
      },
      async (req) => flotilla.getEndpoint(req.params.name),
    );
    r.put(
      '/v1/endpoints/:name',
      {
        schema: {
          tags: etags,
          summary: "Create or replace an endpoint's backends",
          params: nameParamsSchema,
          body: endpointPutSchema,
          response: { 200: endpointViewSchema, ...errors(400, 401, 403, 409, 413, 415) },
        },
      },
      async (req) => {
        const body = req.body as { name?: string };
        if (body.name !== undefined && body.name !== req.params.name) {
          throw validationError(
            'name',
            `expected "${req.params.name}" or no name`,
            'name in the body differs from the path',
          );
        }
        return flotilla.putEndpoint({ ...body, name: req.params.name });
      },
    );
    r.delete(
      '/v1/endpoints/:name',
      {
        schema: {
          tags: etags,
          params: nameParamsSchema,
          response: { 204: z.null(), ...errors(400, 401, 403, 404) },
        },
      },
      async (req, reply) => {
        await flotilla.deleteEndpoint(req.params.name);
        return reply.status(204).send(null);
      },
    );
  });
  void app.register(inspectorRoutes, { flotilla });

  return app;
}
