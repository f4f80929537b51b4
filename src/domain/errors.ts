/**
 * The one error type of Flotilla. Every adapter turns its driver's errors into it in one
 * function; the HTTP layer maps `status` and `code` to the response.
 *
 * Errors that more than one place raises are built by the named constructors below, so a
 * message and its details are written once (`deploymentNotFound(idOrName)`, not a template
 * string at each throw site).
 */
export const ErrorCodes = {
  validation: 400,
  invalid_toml: 400,
  unauthorized: 401,
  forbidden: 403,
  not_found: 404,
  conflict: 409,
  invalid_state: 409,
  payload_too_large: 413,
  uri_too_long: 414,
  unsupported_media_type: 415,
  generator_failed: 422,
  insufficient_resources: 409,
  dependency_unavailable: 503,
  /** PostgreSQL (or the embedded database) unreachable, frozen or closed; retryable. */
  store_unavailable: 503,
  no_healthy_replicas: 503,
  no_backends: 503,
  overloaded: 503,
  activation_timeout: 503,
  upstream_timeout: 504,
  internal: 500,
} as const;

export type ErrorCode = keyof typeof ErrorCodes;

export interface ErrorDetail {
  /** Dotted field path (`resource_slots.cpu`), file path, or `file:line:column`. */
  path: string;
  message: string;
}

export class FlotillaError extends Error {
  readonly code: ErrorCode;
  readonly status: number;
  readonly retryable: boolean;
  readonly details: ErrorDetail[];

  constructor(
    code: ErrorCode,
    message: string,
    opts: { details?: ErrorDetail[]; retryable?: boolean; cause?: unknown; status?: number } = {},
  ) {
    super(message, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.name = 'FlotillaError';
    this.code = code;
    this.status = opts.status ?? ErrorCodes[code];
    this.retryable = opts.retryable ?? false;
    this.details = opts.details ?? [];
  }

  toJSON() {
    return { error: { code: this.code, message: this.message, details: this.details } };
  }
}

export function isFlotillaError(e: unknown): e is FlotillaError {
  return e instanceof FlotillaError;
}

/** The wire shape of every error Flotilla answers (API, proxy, single-role processes). */
export interface ErrorBody {
  error: { code: string; message: string; details: ErrorDetail[] };
}

/**
 * The body of an error response: `{"error": {"code", "message", "details"}}` with at least
 * one detail (an error without details gets one at `(request)` repeating its message).
 */
export function errorBody(err: FlotillaError): ErrorBody {
  const details =
    err.details.length > 0 ? err.details : [{ path: '(request)', message: err.message }];
  return { error: { code: err.code, message: err.message, details } };
}

// ---------------------------------------------------------------- named constructors

/** One or more bad fields; the message lists them as `path: message; ...`. */
export function validationErrors(details: ErrorDetail[]): FlotillaError {
  return new FlotillaError('validation', details.map((d) => `${d.path}: ${d.message}`).join('; '), {
    details,
  });
}

/** One bad field. `summary` is the error's message; by default `path: message`. */
export function validationError(path: string, message: string, summary?: string): FlotillaError {
  if (summary === undefined) return validationErrors([{ path, message }]);
  return new FlotillaError('validation', summary, { details: [{ path, message }] });
}

export function deploymentNotFound(idOrName: string): FlotillaError {
  return new FlotillaError('not_found', `deployment "${idOrName}" not found`, {
    details: [{ path: 'id', message: `no deployment with id or name "${idOrName}"` }],
  });
}

export function endpointNotFound(name: string): FlotillaError {
  return new FlotillaError('not_found', `endpoint "${name}" not found`, {
    details: [{ path: 'name', message: 'no such endpoint' }],
  });
}

export function replicaNotInDeployment(replica: string, deployment: string): FlotillaError {
  return new FlotillaError('not_found', `replica "${replica}" is not part of "${deployment}"`, {
    details: [{ path: 'replica', message: 'no such replica in this deployment' }],
  });
}

/** A request that the thing's current state refuses (409). */
export function invalidState(message: string, detail: string, path = 'state'): FlotillaError {
  return new FlotillaError('invalid_state', message, { details: [{ path, message: detail }] });
}

/** `action` (scale, update, ...) refused because the deployment is in `state`. */
export function deploymentStateRefuses(
  action: string,
  name: string,
  state: string,
  accepts: readonly string[],
): FlotillaError {
  return invalidState(
    `cannot ${action} deployment "${name}" in state ${state}`,
    `${action} is accepted in ${accepts.join(', ')}; the deployment is ${state}`,
  );
}

export function endpointExists(name: string): FlotillaError {
  return new FlotillaError('conflict', `endpoint "${name}" already exists`, {
    details: [{ path: 'name', message: 'already exists; PUT /v1/endpoints/{name} replaces it' }],
  });
}

export function nameTakenByDeployment(name: string): FlotillaError {
  return new FlotillaError('conflict', `"${name}" is the name of a live deployment`, {
    details: [{ path: 'name', message: 'endpoint and deployment names share one namespace' }],
  });
}

export function routeNotFound(method: string, path: string): FlotillaError {
  const message = `no route ${method} ${path}`;
  return new FlotillaError('not_found', message, { details: [{ path: '(url)', message }] });
}

/** A process not ready to serve; one detail per missing thing, at `ready`. */
export function notReady(missing: readonly string[]): FlotillaError {
  const list = missing.length > 0 ? missing : ['not ready'];
  return new FlotillaError('dependency_unavailable', `not ready: ${list.join('; ')}`, {
    details: list.map((m) => ({ path: 'ready', message: m })),
    retryable: true,
  });
}

export function shuttingDown(what: string): FlotillaError {
  const message = `${what} is shutting down`;
  return new FlotillaError('dependency_unavailable', message, {
    details: [{ path: '(request)', message }],
    retryable: true,
  });
}

export function missingToken(): FlotillaError {
  return new FlotillaError('unauthorized', 'this API needs Authorization: Bearer <token>', {
    details: [{ path: 'authorization', message: 'missing or not a Bearer token' }],
  });
}

export function wrongToken(): FlotillaError {
  return new FlotillaError('forbidden', 'the token is not valid for this API', {
    details: [{ path: 'authorization', message: 'wrong token' }],
  });
}

/** An unexpected failure: the cause is kept for the log, the message never leaks it. */
export function internalError(cause: unknown, message = 'internal error'): FlotillaError {
  return new FlotillaError('internal', message, { cause });
}
