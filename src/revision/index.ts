/**
 * Revision generation: service-definition.toml (root < variant section) < request, merged and
 * validated into a ModelRevisionSpec. See docs/definitions.md for the rules.
 */
export type { ModelRevisionSpec } from '../domain/revision.ts';
export {
  generateRevision,
  type RevisionInput,
  type RevisionOptions,
  type RevisionResult,
} from './generate-revision.ts';
export { type Layer, mergeRevisionLayers } from './layers.ts';
export { DEFINITION_FILE, MAX_DEFINITION_BYTES } from './load-definition.ts';
export { splitCommand } from './split-command.ts';
