/**
 * What Flotilla shows of a deployment's environment: values whose names look secret are
 * replaced by `***` in everything it returns (embedded API, HTTP API, previews) or logs.
 */

/**
 * A name looks secret when a `_`/`-` separated word is SECRET, PASSWORD or PASSWD anywhere, or
 * it ends in KEY, TOKEN, CREDENTIAL(S), AUTH or PAT (OPENAI_API_KEY, HF_TOKEN, SECRET_KEY_BASE);
 * ECHO_TOKEN_LATENCY_MS and TOKENIZER_PATH are not.
 */
const SECRET_NAME =
  /(^|[_-])(secret|secrets|password|passwd)([_-]|$)|(^|[_-])(key|token|credentials?|auth|pat|apikey)$/i;

export const REDACTED = '***';

/** True when an environment variable's name looks like a key, token or password. */
export function isSecretName(name: string): boolean {
  return SECRET_NAME.test(name);
}

/** Environment values whose names look like keys, tokens or passwords, shown as `***`. */
export function redactEnviron(
  env: Record<string, string> | undefined,
): Record<string, string> | undefined {
  if (!env) return env;
  return Object.fromEntries(
    Object.entries(env).map(([k, v]) => [k, isSecretName(k) ? REDACTED : v]),
  );
}

interface HasEnviron {
  environ?: Record<string, string> | undefined;
}

function redactSpec<S extends HasEnviron>(spec: S): S {
  return { ...spec, environ: redactEnviron(spec.environ) ?? {} };
}

/**
 * A copy safe to return or log: the environment of its revision and of its session
 * redacted. Serves deployment views and revision previews alike.
 */
export function redactRevisionAndSession<
  T extends { revision: HasEnviron | null; session: HasEnviron | null },
>(x: T): T {
  return {
    ...x,
    revision: x.revision ? redactSpec(x.revision) : null,
    session: x.session ? redactSpec(x.session) : null,
  };
}
