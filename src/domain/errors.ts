/**
 * The one error type of Flotilla. Every adapter turns its driver's errors into it in one
 * function; the HTTP layer maps `status` and `code` to the response.
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
  unsupported_media_type: 415,
  generator_failed: 422,
  insufficient_resources: 409,
  dependency_unavailable: 503,
  no_healthy_replicas: 503,
  no_backends: 503,
  overloaded: 503,
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
