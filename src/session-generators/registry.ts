/**
 * Maps runtime variants to their definition generators. Adding a variant is one generator
 * file plus one `registerGenerator` line in ./index.ts.
 */
import type { SessionGenerator } from './generator.ts';

const generators = new Map<string, SessionGenerator>();
const variants: string[] = [];

/** The registered variant names, in registration order (a live view). */
export const runtimeVariants: readonly string[] = variants;

/** `HUGGINGFACE_TGI`, `huggingface_tgi` and `huggingface-tgi` all name one variant. */
export function canonicalVariant(name: string): string {
  return name.trim().toLowerCase().replace(/_/g, '-');
}

export function registerGenerator(generator: SessionGenerator): void {
  const variant = canonicalVariant(generator.variant);
  if (variant !== generator.variant) {
    throw new Error(`generator variant "${generator.variant}" must be written "${variant}"`);
  }
  if (generators.has(variant))
    throw new Error(`a generator for "${variant}" is already registered`);
  generators.set(variant, generator);
  variants.push(variant);
}

export function getGenerator(variant: string): SessionGenerator | undefined {
  return generators.get(canonicalVariant(variant));
}
