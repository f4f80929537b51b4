/**
 * Bearer-token authentication of /v1. The comparison runs in constant time over SHA-256
 * digests, so neither the token's content nor its length leaks through timing.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import { missingToken, wrongToken } from '../domain/errors.ts';

const digest = (s: string) => createHash('sha256').update(s, 'utf8').digest();

/** Returns a checker for the Authorization header; throws 401 (none) or 403 (wrong token). */
export function bearerChecker(token: string): (authorization: string | undefined) => void {
  const expected = digest(token);
  return (authorization) => {
    const m = /^Bearer\s+(\S+)\s*$/i.exec(authorization ?? '');
    if (!m) throw missingToken();
    if (!timingSafeEqual(digest(m[1]!), expected)) throw wrongToken();
  };
}
