/**
 * The one place HTTP errors are shaped: every FlotillaError keeps its code, status and
 * details; Fastify's own errors (body too large, wrong content type, bad JSON, unknown route)
 * are mapped to the same codes, so every error body is
 * `{"error": {"code", "message", "details": [{"path", "message"}]}}`.
 */
import type { FastifyError, FastifyReply, FastifyRequest } from 'fastify';
import {
  type ErrorCode,
  ErrorCodes,
  errorBody,
  FlotillaError,
  internalError,
} from '../domain/errors.ts';

/** The body shape lives in the domain (the proxy and the single-role processes use it too). */
export { errorBody };

/** Fastify error codes with a Flotilla meaning. */
const FASTIFY_CODES: Record<string, { code: ErrorCode; path: string }> = {
  FST_ERR_CTP_BODY_TOO_LARGE: { code: 'payload_too_large', path: '(body)' },
  FST_ERR_CTP_INVALID_MEDIA_TYPE: { code: 'unsupported_media_type', path: 'content-type' },
  FST_ERR_CTP_INVALID_CONTENT_LENGTH: { code: 'validation', path: 'content-length' },
  FST_ERR_CTP_EMPTY_JSON_BODY: { code: 'validation', path: '(body)' },
  FST_ERR_CTP_INVALID_JSON_BODY: { code: 'validation', path: '(body)' },
  FST_ERR_NOT_FOUND: { code: 'not_found', path: '(url)' },
  FST_ERR_BAD_URL: { code: 'validation', path: '(url)' },
  FST_ERR_MAX_PARAM_LENGTH: { code: 'uri_too_long', path: '(url)' },
  FST_ERR_CTP_INVALID_CONTENT_TYPE: { code: 'unsupported_media_type', path: 'content-type' },
};

/** Status -> code for the rest of Fastify's 4xx errors. */
const BY_STATUS: Record<number, ErrorCode> = {
  400: 'validation',
  401: 'unauthorized',
  403: 'forbidden',
  404: 'not_found',
  409: 'conflict',
  413: 'payload_too_large',
  414: 'uri_too_long',
  415: 'unsupported_media_type',
  503: 'dependency_unavailable',
};

/** Turns anything thrown in a request into a FlotillaError; unknown errors become `internal`. */
export function toFlotillaError(err: unknown, bodyLimit: number): FlotillaError {
  if (err instanceof FlotillaError) return err;
  const e = err as Partial<FastifyError> & { message?: string; name?: string };
  const known = e.code ? FASTIFY_CODES[e.code] : undefined;
  if (known) {
    const message =
      known.code === 'payload_too_large'
        ? `request body larger than ${bodyLimit} bytes`
        : known.code === 'unsupported_media_type'
          ? 'expected Content-Type: application/json'
          : known.code === 'uri_too_long'
            ? 'a path segment is too long'
            : (e.message ?? known.code);
    return new FlotillaError(known.code, message, {
      details: [{ path: known.path, message }],
    });
  }
  // The JSON parser's own SyntaxError carries statusCode 400.
  if (e.name === 'SyntaxError' && e.statusCode === 400) {
    const message = `invalid JSON: ${e.message}`;
    return new FlotillaError('validation', message, { details: [{ path: '(body)', message }] });
  }
  const status = typeof e.statusCode === 'number' ? e.statusCode : 500;
  if (status >= 400 && status < 500) {
    const code = BY_STATUS[status] ?? 'validation';
    const message = e.message ?? code;
    return new FlotillaError(code, message, {
      status,
      details: [{ path: '(request)', message }],
    });
  }
  return internalError(err);
}

export function createErrorHandler(bodyLimit: number) {
  return (err: unknown, request: FastifyRequest, reply: FastifyReply) => {
    const fe = toFlotillaError(err, bodyLimit);
    if (fe.status >= 500 && fe.code === 'internal') {
      request.log.error({ err }, 'request failed');
    } else if (fe.status >= 500) {
      request.log.warn({ err: fe }, 'dependency error');
    }
    const status = fe.status || ErrorCodes[fe.code] || 500;
    if (fe.retryable || status === 503) reply.header('retry-after', '1');
    return reply.status(status).type('application/json; charset=utf-8').send(errorBody(fe));
  };
}
