import { FlotillaError, isFlotillaError } from '../domain/errors.ts';
import { type ModelRevisionSpec, modelRevisionSpecSchema } from '../domain/revision.ts';
import type { SessionSpec } from '../domain/session.ts';
import { getGenerator, runtimeVariants } from './registry.ts';

function failed(
  message: string,
  details: { path: string; message: string }[],
  cause?: unknown,
): FlotillaError {
  return new FlotillaError('generator_failed', message, { details, cause });
}

/**
 * Turns a revision into the session a backend runs. Throws FlotillaError('generator_failed')
 * when the revision is not usable (unknown variant, a field the variant needs, a malformed
 * revision read back from storage) or the generator breaks; the deployment machine moves the
 * deployment to ERROR on it.
 */
export function generateSession(revision: ModelRevisionSpec): SessionSpec {
  const parsed = modelRevisionSpecSchema.safeParse(revision, { reportInput: true });
  if (!parsed.success) {
    const details = parsed.error.issues.map((i) => ({
      path: i.path.join('.'),
      message: i.message,
    }));
    throw failed('the revision is malformed', details);
  }
  const rev = parsed.data;
  const generator = getGenerator(rev.runtime_variant);
  if (!generator) {
    const message = `no definition generator for runtime variant "${rev.runtime_variant}"; valid variants: ${runtimeVariants.join(', ')}`;
    throw failed(message, [{ path: 'runtime_variant', message }]);
  }
  const problems = generator.validate(rev);
  if (problems.length > 0) {
    throw failed(
      `the revision cannot run as ${generator.variant}: ${problems.map((p) => `${p.path}: ${p.message}`).join('; ')}`,
      problems,
    );
  }
  let session: SessionSpec;
  try {
    session = generator.generate(rev);
  } catch (err) {
    if (isFlotillaError(err) && err.code === 'generator_failed') throw err;
    const message = `the ${generator.variant} generator failed: ${err instanceof Error ? err.message : String(err)}`;
    throw failed(message, [{ path: 'runtime_variant', message }], err);
  }
  if (session.command.length === 0 || session.command[0] === '') {
    const message = `the ${generator.variant} generator produced an empty command`;
    throw failed(message, [{ path: 'command', message }]);
  }
  return session;
}
