/**
 * Properties of mergeRevisionLayers (root < variant section < request):
 * a field the request sets always wins over both definition levels, a field it leaves out
 * falls back to the variant section and then the root, and merging is idempotent.
 * Seeded: FC_SEED=<n> replays a run; fast-check prints the seed and path of a failure.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { type Layer, mergeRevisionLayers } from '../../src/revision/index.ts';

const seed = Number(process.env.FC_SEED ?? 20240601);
const params = { seed, numRuns: 400 };

// Small key and value pools so the three layers collide often.
const word = fc.constantFrom('a', 'b', 'c', 'x:1', '/health', '0.95');
const envKey = fc.constantFrom('LOG_LEVEL', 'MAX_BATCH_SIZE', 'HF_HOME', 'A', '__proto__');
const num = fc.constantFrom(1, 2, 4, 8, 0.5);

const layerArb: fc.Arbitrary<Layer> = fc.record(
  {
    environment: fc.record({ image: word, architecture: word }, { requiredKeys: [] }),
    resource_slots: fc.record(
      { cpu: num, mem: fc.constantFrom('16gb', '512m', 1024), gpu: num },
      { requiredKeys: [] },
    ),
    environ: fc.dictionary(envKey, word, { maxKeys: 4 }),
    health_check: fc.record(
      { path: word, interval_s: num, timeout_s: num, healthy_threshold: num },
      { requiredKeys: [] },
    ),
    command: fc.array(word, { minLength: 1, maxLength: 3 }),
    extra_args: fc.array(word, { maxLength: 2 }),
    port: fc.integer({ min: 1, max: 65535 }),
    model: word,
    model_name: word,
    image: word,
  },
  { requiredKeys: [] },
);

/** Every leaf a layer sets, as [path, value]; `image` is the shorthand of environment.image. */
function leaves(layer: Layer): [string[], unknown][] {
  const out: [string[], unknown][] = [];
  for (const [key, value] of Object.entries(layer)) {
    if (key === 'image') continue;
    if (value !== null && typeof value === 'object' && !Array.isArray(value)) {
      for (const [sub, v] of Object.entries(value)) out.push([[key, sub], v]);
    } else out.push([[key], value]);
  }
  // The shorthand wins over environment.image within its own layer.
  if (layer.image !== undefined) {
    const i = out.findIndex(([p]) => p[0] === 'environment' && p[1] === 'image');
    if (i >= 0) out.splice(i, 1);
    out.push([['environment', 'image'], layer.image]);
  }
  return out;
}

function at(obj: unknown, p: string[]): { found: boolean; value: unknown } {
  let cur = obj;
  for (const k of p) {
    if (cur === null || typeof cur !== 'object' || !Object.hasOwn(cur, k))
      return { found: false, value: undefined };
    cur = (cur as Record<string, unknown>)[k];
  }
  return { found: true, value: cur };
}

describe('mergeRevisionLayers', () => {
  it('a field the request sets always wins over the variant section and the root', () => {
    fc.assert(
      fc.property(layerArb, layerArb, layerArb, (root, section, request) => {
        const merged = mergeRevisionLayers(root, section, request);
        for (const [p, value] of leaves(request)) {
          expect(at(merged, p), p.join('.')).toEqual({ found: true, value });
        }
      }),
      params,
    );
  });

  it('a field the request leaves out comes from the variant section, else the root', () => {
    fc.assert(
      fc.property(layerArb, layerArb, layerArb, (root, section, request) => {
        const merged = mergeRevisionLayers(root, section, request);
        const fromRequest = new Set(leaves(request).map(([p]) => p.join('.')));
        const fromSection = new Map(leaves(section).map(([p, v]) => [p.join('.'), v]));
        for (const [p, value] of leaves(root)) {
          const key = p.join('.');
          if (fromRequest.has(key) || fromSection.has(key)) continue;
          // A scalar replaced by a table (or the reverse) at a higher level is not a leaf here.
          if (fromRequest.has(p[0]!) || fromSection.has(p[0]!)) continue;
          expect(at(merged, p), key).toEqual({ found: true, value });
        }
        for (const [key, value] of fromSection) {
          if (fromRequest.has(key) || fromRequest.has(key.split('.')[0]!)) continue;
          expect(at(merged, key.split('.')), key).toEqual({ found: true, value });
        }
      }),
      params,
    );
  });

  it('is idempotent: merging the result again changes nothing', () => {
    fc.assert(
      fc.property(layerArb, layerArb, layerArb, (root, section, request) => {
        const merged = mergeRevisionLayers(root, section, request);
        expect(mergeRevisionLayers(merged, section, request)).toEqual(merged);
        expect(mergeRevisionLayers(merged, merged, merged)).toEqual(merged);
        expect(mergeRevisionLayers(merged, {}, {})).toEqual(merged);
        expect(mergeRevisionLayers({}, {}, merged)).toEqual(merged);
      }),
      params,
    );
  });

  it('does not modify its inputs', () => {
    fc.assert(
      fc.property(layerArb, layerArb, layerArb, (root, section, request) => {
        const before = structuredClone([root, section, request]);
        mergeRevisionLayers(root, section, request);
        expect([root, section, request]).toEqual(before);
      }),
      params,
    );
  });
});
