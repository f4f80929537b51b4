import { describe, expect, it } from 'vitest';
import { deploymentRequestSchema, revisionSourceOf } from '../../src/domain/deployment-request.ts';
import { FlotillaError } from '../../src/domain/errors.ts';
import { generateRevision, type RevisionInput } from '../../src/revision/index.ts';
import { generateSession } from '../../src/session-generators/generate-session.ts';

const opts = { modelRoots: [process.cwd()] };

async function details(input: RevisionInput): Promise<string[]> {
  try {
    await generateRevision(input, opts);
  } catch (err) {
    expect(err).toBeInstanceOf(FlotillaError);
    return (err as FlotillaError).details.map((d) => `${d.path}: ${d.message}`);
  }
  throw new Error('expected generateRevision to fail');
}

const DEFINITION = `
command = "server --port {port}"
weight = 2

[health_check]
method = "HEAD"
path = "/ready"

[cmd.health_check]
method = "POST"
`;

describe('health_check.method', () => {
  it('merges by priority (root < variant section < request) and reaches the session health', async () => {
    const fromSection = await generateRevision(
      { runtime_variant: 'cmd', service_definition: DEFINITION, request: {} },
      opts,
    );
    expect(fromSection.revision.health_check).toMatchObject({ method: 'POST', path: '/ready' });
    expect(generateSession(fromSection.revision).health).toMatchObject({
      method: 'POST',
      path: '/ready',
    });

    const fromRequest = await generateRevision(
      {
        runtime_variant: 'cmd',
        service_definition: DEFINITION,
        request: { health_check: { method: 'GET' } },
      },
      opts,
    );
    expect(generateSession(fromRequest.revision).health).toMatchObject({
      method: 'GET',
      path: '/ready',
    });
  });

  it('defaults to GET in the session when no layer sets it', async () => {
    const { revision } = await generateRevision(
      { runtime_variant: 'cmd', request: { command: 'server' } },
      opts,
    );
    expect(revision.health_check.method).toBeUndefined();
    expect(generateSession(revision).health.method).toBe('GET');
  });

  it('refuses a method other than GET, HEAD or POST, naming the field and the file', async () => {
    expect(
      await details({
        runtime_variant: 'cmd',
        service_definition: 'command = "x"\n[health_check]\nmethod = "DELETE"\n',
        request: {},
      }),
    ).toEqual([
      'health_check.method: expected one of GET, HEAD, POST, got "DELETE" (in service definition)',
    ]);
    expect(
      await details({
        runtime_variant: 'cmd',
        request: { command: 'x', health_check: { method: 'get' } },
      }),
    ).toEqual(['health_check.method: expected one of GET, HEAD, POST, got "get"']);
  });
});

describe('weight', () => {
  it('is 1..1000, replaced whole by a higher layer, and carried into the session', async () => {
    const fromFile = await generateRevision(
      { runtime_variant: 'cmd', service_definition: DEFINITION, request: {} },
      opts,
    );
    expect(fromFile.revision.weight).toBe(2);
    expect(generateSession(fromFile.revision).weight).toBe(2);

    const fromRequest = await generateRevision(
      { runtime_variant: 'cmd', service_definition: DEFINITION, request: { weight: 1000 } },
      opts,
    );
    expect(generateSession(fromRequest.revision).weight).toBe(1000);
  });

  it('is absent from the session when no layer sets it (the routing table reads it as 1)', async () => {
    const { revision } = await generateRevision(
      { runtime_variant: 'cmd', request: { command: 'server' } },
      opts,
    );
    expect(generateSession(revision).weight).toBeUndefined();
  });

  it('refuses 0, 1001, a fraction and a string, naming the field', async () => {
    for (const [weight, shown] of [
      [0, '0'],
      [1001, '1001'],
      [1.5, '1.5'],
      ['3', '"3"'],
    ] as const) {
      expect(await details({ runtime_variant: 'cmd', request: { command: 'x', weight } })).toEqual([
        `weight: expected an integer weight between 1 and 1000, got ${shown}`,
      ]);
    }
  });

  it('goes from a deployment request to revision generation as a revision field', async () => {
    const req = deploymentRequestSchema.parse({ name: 'w', command: 'server', weight: 3 });
    const source = revisionSourceOf(req, req.runtime_variant);
    expect(source.request.weight).toBe(3);
    const { revision } = await generateRevision(source, opts);
    expect(generateSession(revision).weight).toBe(3);
  });
});
