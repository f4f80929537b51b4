/**
 * The CLI client's configuration (API address and token) and the one error type every CLI
 * configuration mistake uses. Parsed once per command; nothing else reads `process.env`.
 */

/** A configuration mistake; `lines` holds one line per problem, naming the flag and variable. */
export class ConfigError extends Error {
  constructor(readonly lines: string[]) {
    super(lines.join('\n'));
    this.name = 'ConfigError';
  }
}

/** True when `s` parses as a URL with one of `schemes` (without the colon). */
export function isUrlWithScheme(s: string, schemes: readonly string[]): boolean {
  try {
    return schemes.includes(new URL(s).protocol.replace(/:$/, ''));
  } catch {
    return false;
  }
}

export interface ClientConfig {
  /** Base URL of the API, no trailing slash. */
  api: string;
  token: string | undefined;
}

export const DEFAULT_API_URL = 'http://127.0.0.1:8080';

/** The CLI's API address (`--api`, FLOTILLA_API_URL) and token (`--token`, FLOTILLA_API_TOKEN). */
export function parseClientConfig(
  flags: { api?: string | undefined; token?: string | undefined },
  env: NodeJS.ProcessEnv = process.env,
): Readonly<ClientConfig> {
  const api = flags.api ?? (env.FLOTILLA_API_URL || DEFAULT_API_URL);
  if (!isUrlWithScheme(api, ['http', 'https'])) {
    throw new ConfigError([
      `--api / FLOTILLA_API_URL: expected an http:// URL, got ${JSON.stringify(api)}`,
    ]);
  }
  const token = flags.token ?? (env.FLOTILLA_API_TOKEN || undefined);
  return Object.freeze({ api: api.replace(/\/+$/, ''), token });
}
