/**
 * Definition generators: one per runtime variant, each turning a ModelRevisionSpec into the
 * SessionSpec a backend runs. To add a variant, write one generator file (see ./cmd.ts for the
 * smallest) and register it below; docs/definitions.md has the walk-through.
 */
import { cmdGenerator } from './cmd.ts';
import { customGenerator } from './custom.ts';
import { huggingfaceTgiGenerator } from './huggingface-tgi.ts';
import { modularMaxGenerator } from './modular-max.ts';
import { nimGenerator } from './nim.ts';
import { registerGenerator } from './registry.ts';
import { sglangGenerator } from './sglang.ts';
import { vllmGenerator } from './vllm.ts';

registerGenerator(vllmGenerator);
registerGenerator(huggingfaceTgiGenerator);
registerGenerator(sglangGenerator);
registerGenerator(nimGenerator);
registerGenerator(modularMaxGenerator);
registerGenerator(cmdGenerator);
registerGenerator(customGenerator);

export { generateSession } from './generate-session.ts';
export type { GeneratorDefaults, SessionGenerator } from './generator.ts';
export { canonicalVariant, getGenerator, registerGenerator, runtimeVariants } from './registry.ts';
