/**
 * The full-stack docker-compose.yml and the Dockerfile, checked without a Docker engine or a
 * registry: Debian's `docker-compose config` validates the file (CI installs docker-compose; the
 * test fails saying so when the binary is missing), and the file's structure is checked against
 * what README "Full stack with Docker Compose" promises: every Flotilla image is built by this
 * repository's Dockerfile, one coordinator, two proxies and a prober, healthchecks and
 * `depends_on` conditions, named volumes, ports on 127.0.0.1 only.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, readFileSync, realpathSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';

const REPO = realpathSync(fileURLToPath(new URL('../../', import.meta.url)));
const COMPOSE_FILE = path.join(REPO, 'docker-compose.yml');
const DOCKERFILE = path.join(REPO, 'Dockerfile');

interface Service {
  image?: string;
  build?: string | { context?: string; dockerfile?: string };
  command?: string[];
  environment?: Record<string, string>;
  ports?: string[];
  volumes?: string[];
  network_mode?: string;
  depends_on?: Record<string, { condition?: string }> | string[];
  healthcheck?: { test?: string[] | string };
  user?: string;
}

const compose = parse(readFileSync(COMPOSE_FILE, 'utf8'), { merge: true }) as {
  services: Record<string, Service>;
  volumes?: Record<string, unknown>;
};
const services = Object.entries(compose.services);
const roleOf = (s: Service) => {
  const c = s.command ?? [];
  const i = c.indexOf('--role');
  return c[0] === 'serve' ? (i >= 0 ? c[i + 1] : 'all') : undefined;
};
const flagOf = (s: Service, flag: string) => {
  const c = s.command ?? [];
  const i = c.indexOf(flag);
  return i >= 0 ? c[i + 1] : undefined;
};

function buildOf(s: Service): { context: string; dockerfile: string } | undefined {
  if (s.build === undefined) return undefined;
  const b = typeof s.build === 'string' ? { context: s.build } : s.build;
  return {
    context: path.resolve(REPO, b.context ?? '.'),
    dockerfile: path.resolve(REPO, b.context ?? '.', b.dockerfile ?? 'Dockerfile'),
  };
}

describe('docker-compose.yml: validated by docker-compose', () => {
  const bin = spawnSync('docker-compose', ['version'], { encoding: 'utf8' });
  const missing =
    bin.error || bin.status !== 0
      ? `docker-compose is not runnable here (${bin.error?.message ?? bin.stderr.trim()}): install Debian's docker-compose (apt-get install -y docker-compose; .ci/run does)`
      : null;

  it('`docker-compose config -q` accepts the file', () => {
    if (missing) throw new Error(missing);
    const r = spawnSync('docker-compose', ['-f', COMPOSE_FILE, 'config', '-q'], {
      cwd: REPO,
      encoding: 'utf8',
      env: { ...process.env, FLOTILLA_API_TOKEN: 'compose-test-token' },
    });
    expect(r.status, r.stderr).toBe(0);
  }, 60_000);

  it('refuses to start without FLOTILLA_API_TOKEN (every Flotilla port listens on 0.0.0.0 in its container)', () => {
    if (missing) throw new Error(missing);
    const env = { ...process.env };
    delete env.FLOTILLA_API_TOKEN;
    const r = spawnSync('docker-compose', ['-f', COMPOSE_FILE, 'config', '-q'], {
      cwd: REPO,
      encoding: 'utf8',
      env,
    });
    expect(r.status).not.toBe(0);
    expect(r.stderr).toContain('set FLOTILLA_API_TOKEN');
  }, 60_000);

  it('the normalized config builds every Flotilla service from this repository', () => {
    if (missing) throw new Error(missing);
    const normalized = parse(
      execFileSync('docker-compose', ['-f', COMPOSE_FILE, 'config'], {
        cwd: REPO,
        encoding: 'utf8',
        env: { ...process.env, FLOTILLA_API_TOKEN: 'compose-test-token' },
      }),
    ) as { services: Record<string, Service> };
    for (const [name, s] of Object.entries(normalized.services)) {
      if (roleOf(s) === undefined) continue;
      expect(buildOf(s), name).toEqual({ context: REPO, dockerfile: DOCKERFILE });
    }
  }, 60_000);
});

describe('docker-compose.yml: the stack README promises', () => {
  it('runs one coordinator, two proxies and one prober, beside PostgreSQL, Redis and etcd', () => {
    const roles = services.map(([, s]) => roleOf(s)).filter(Boolean);
    expect(roles.sort()).toEqual(['coordinator', 'prober', 'proxy', 'proxy']);
    const images = services.map(([, s]) => s.image ?? '');
    expect(images.some((i) => i.startsWith('postgres:'))).toBe(true);
    expect(images.some((i) => /^(redis|valkey\/valkey):/.test(i))).toBe(true);
    expect(images.some((i) => i.includes('etcd:'))).toBe(true);
  });

  it("every build points at this repository's Dockerfile, and every Flotilla image is built by it", () => {
    const flotillaImages = new Set<string>();
    for (const [name, s] of services) {
      const build = buildOf(s);
      if (build) {
        expect(build, name).toEqual({ context: REPO, dockerfile: DOCKERFILE });
        if (s.image) flotillaImages.add(s.image);
      }
      if (roleOf(s) !== undefined) expect(build, `${name} runs flotilla: built here`).toBeDefined();
    }
    expect(flotillaImages.size).toBe(1);
    // No service pulls an image of Flotilla's that the Dockerfile does not build.
    for (const [name, s] of services) {
      if (s.image && /flotilla/i.test(s.image)) expect(buildOf(s), name).toBeDefined();
    }
    expect(existsSync(DOCKERFILE)).toBe(true);
  });

  it('every service has a healthcheck, and every dependency waits for its health', () => {
    for (const [name, s] of services) {
      expect(s.healthcheck?.test, `${name} healthcheck`).toBeDefined();
      const deps = s.depends_on ?? {};
      expect(Array.isArray(deps), `${name}: depends_on with conditions`).toBe(false);
      for (const [dep, cond] of Object.entries(deps)) {
        expect(compose.services[dep], `${name} depends on ${dep}`).toBeDefined();
        expect(cond.condition, `${name} -> ${dep}`).toBe('service_healthy');
      }
    }
    const coordinator = services.find(([, s]) => roleOf(s) === 'coordinator')![1];
    expect(Object.keys(coordinator.depends_on ?? {}).sort()).toEqual(['etcd', 'postgres', 'redis']);
  });

  it('publishes ports on 127.0.0.1 only, and every Flotilla port of the shared namespace', () => {
    const published = new Set<string>();
    for (const [name, s] of services) {
      for (const p of s.ports ?? []) {
        expect(String(p), name).toMatch(/^127\.0\.0\.1:\d+:\d+$/);
        published.add(String(p).split(':')[2]!);
      }
      if (s.network_mode) expect(s.network_mode).toMatch(/^service:/);
    }
    for (const [name, s] of services) {
      if (roleOf(s) === undefined) continue;
      for (const flag of ['--api-port', '--proxy-port']) {
        const port = flagOf(s, flag);
        if (port) expect(published.has(port), `${name} ${flag} ${port} published`).toBe(true);
      }
    }
  });

  it('keeps state in named volumes, never in bind mounts', () => {
    const declared = Object.keys(compose.volumes ?? {});
    for (const [name, s] of services) {
      for (const v of s.volumes ?? []) {
        const source = String(v).split(':')[0]!;
        expect(declared, `${name}: ${v}`).toContain(source);
      }
    }
    for (const stateful of ['postgres', 'redis', 'etcd', 'coordinator']) {
      expect(compose.services[stateful]?.volumes?.length, stateful).toBeGreaterThan(0);
    }
  });
});

describe('Dockerfile', () => {
  const lines = readFileSync(DOCKERFILE, 'utf8')
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l && !l.startsWith('#'));
  const froms = lines.filter((l) => /^FROM /i.test(l));
  const finalStage = lines.slice(lines.lastIndexOf(froms.at(-1)!));

  it('is multi-stage: a build stage compiles with `npm run build`, the final stage copies dist/', () => {
    expect(froms.length).toBeGreaterThanOrEqual(2);
    expect(froms[0]).toMatch(/^FROM node:20\S* AS build$/i);
    expect(lines.some((l) => /^RUN npm run build\b/.test(l))).toBe(true);
    expect(finalStage.some((l) => /^COPY --from=build \/app\/dist /.test(l))).toBe(true);
    expect(finalStage.some((l) => /^COPY --from=build \/app\/node_modules /.test(l))).toBe(true);
    // No TypeScript toolchain at run time: dev dependencies are pruned in the build stage.
    expect(lines.some((l) => /npm prune --omit=dev/.test(l))).toBe(true);
  });

  it('runs as a non-root user, with bin/flotilla.js as its entry point', () => {
    const users = finalStage.filter((l) => /^USER /i.test(l));
    expect(users.length).toBeGreaterThan(0);
    expect(users.at(-1)).not.toMatch(/^USER (root|0)(:|$)/i);
    expect(finalStage).toContain('ENTRYPOINT ["node", "bin/flotilla.js"]');
  });

  it('copies only paths that exist in the repository', () => {
    for (const l of lines) {
      const m = /^COPY (?!--from)(.+) \S+$/.exec(l);
      if (!m) continue;
      for (const src of m[1]!.split(/\s+/)) {
        expect(existsSync(path.join(REPO, src)), `${l}: ${src}`).toBe(true);
      }
    }
  });
});
