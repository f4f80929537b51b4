/**
 * The Docker backend: each replica is a container named `flotilla-<replicaId>` and labelled
 * `flotilla.replica-id=<replicaId>`; the container's port is published on a free host port.
 *
 * - Adoption after a restart is by label: a running container with the replica's label is the
 *   replica; an exited one is reported through onExit (at least once, until stop/start).
 * - Deaths come from Docker's event stream (`die` events of our containers) with a list poll
 *   (every second) behind it in case the stream drops.
 * - Stop is Docker's: the image's stop signal (SIGTERM by default), SIGKILL after the grace
 *   period (Docker counts it in whole seconds, so it is rounded up), then the container is
 *   removed with its anonymous volumes.
 * - With a `scope`, only containers labelled `flotilla.scope=<scope>` are this backend's (listed,
 *   adopted, stopped); several installations or test files can share one engine.
 * - Ports are published on `host` (127.0.0.1 by default) only; the session's cpu and memory
 *   become the container's NanoCpus and Memory limits.
 */
import type { Readable } from 'node:stream';
import Dockerode from 'dockerode';
import { FlotillaError } from '../domain/errors.ts';
import { httpUrl } from '../domain/host.ts';
import type { ResourceSlots, SessionSpec } from '../domain/session.ts';
import {
  isValidReplicaId,
  REPLICA_ID_ENV,
  REPLICA_ID_LABEL,
  type ReplicaBackend,
  type ReplicaExit,
  type ReplicaHandle,
  type ReplicaStatus,
  type ReplicaUsage,
  substitutePort,
} from './backend.ts';
import { CapacityLedger, resolveCapacity } from './capacity.ts';
import { ExitNotifier } from './exit-notifier.ts';
import { KeyedQueue, stopAtClose } from './keyed-queue.ts';
import { DEFAULT_TAIL_BYTES } from './replica-log.ts';

export interface DockerBackendOptions {
  /** A ready client; default `new Dockerode(dockerOptions)` (DOCKER_HOST or the local socket). */
  docker?: Dockerode;
  dockerOptions?: Dockerode.DockerOptions;
  /** Node capacity; each missing slot defaults to this machine's. */
  capacity?: Partial<ResourceSlots>;
  /** Host address ports are published on and replicas reached at. Default `127.0.0.1`. */
  host?: string;
  /** Pull an image that is not present. Default true. */
  pullImages?: boolean;
  /** Docker network to attach containers to (default: Docker's bridge). */
  network?: string;
  /** Fallback poll for deaths the event stream missed. Default 1000 ms. */
  pollIntervalMs?: number;
  /**
   * Manage only the containers of this scope (label `flotilla.scope`, also in the container
   * name), so several installations (or test files) share one engine without adopting each
   * other's replicas. Default: no scope, every container Flotilla labelled as managed.
   */
  scope?: string;
}

const MANAGED_LABEL = 'flotilla.managed';
const RESOURCES_LABEL = 'flotilla.resources';
const PORT_LABEL = 'flotilla.container-port';
const SCOPE_LABEL = 'flotilla.scope';

interface Tracked {
  replicaId: string;
  containerId: string;
  handle: ReplicaHandle;
  resources: ResourceSlots;
  state: 'running' | 'stopping' | 'exited';
}

function containerName(replicaId: string, scope: string | undefined): string {
  return scope ? `flotilla-${scope}-${replicaId}` : `flotilla-${replicaId}`;
}

/** Turns a Docker/driver error into FlotillaError, in one place. */
export function dockerError(action: string, err: unknown): FlotillaError {
  const e = err as {
    statusCode?: number;
    code?: string;
    message?: string;
    json?: { message?: string };
  };
  const detail = e?.json?.message ?? e?.message ?? String(err);
  if (e?.code === 'ECONNREFUSED' || e?.code === 'ENOENT' || e?.code === 'EACCES') {
    return new FlotillaError(
      'dependency_unavailable',
      `${action}: no Docker engine answers (${detail})`,
      {
        cause: err,
        retryable: true,
      },
    );
  }
  if (e?.statusCode === 404)
    return new FlotillaError('not_found', `${action}: ${detail}`, { cause: err });
  if (e?.statusCode === 409)
    return new FlotillaError('conflict', `${action}: ${detail}`, { cause: err });
  if (e?.statusCode === 400)
    return new FlotillaError('validation', `${action}: ${detail}`, { cause: err });
  return new FlotillaError('dependency_unavailable', `${action}: ${detail}`, {
    cause: err,
    retryable: true,
  });
}

function statusCode(err: unknown): number | undefined {
  return (err as { statusCode?: number })?.statusCode;
}

/** Splits Docker's multiplexed log stream (8-byte frame headers) into plain text. */
export function demuxDockerLogs(buf: Buffer): string {
  const parts: Buffer[] = [];
  let offset = 0;
  while (offset + 8 <= buf.length) {
    const type = buf[offset];
    const size = buf.readUInt32BE(offset + 4);
    if (type === undefined || type > 2 || buf[offset + 1] !== 0 || offset + 8 + size > buf.length) {
      // Not multiplexed (a TTY container): the bytes are the text.
      return offset === 0 ? buf.toString('utf8') : Buffer.concat(parts).toString('utf8');
    }
    parts.push(buf.subarray(offset + 8, offset + 8 + size));
    offset += 8 + size;
  }
  return Buffer.concat(parts).toString('utf8');
}

function parseResources(label: string | undefined): ResourceSlots {
  try {
    const r = JSON.parse(label ?? '');
    return { cpu: Number(r.cpu) || 0, mem: Number(r.mem) || 0, gpu: Number(r.gpu) || 0 };
  } catch {
    return { cpu: 0, mem: 0, gpu: 0 };
  }
}

class DockerBackend implements ReplicaBackend {
  readonly name = 'docker' as const;
  private readonly docker: Dockerode;
  private readonly host: string;
  private readonly ledger: CapacityLedger;
  private readonly replicas = new Map<string, Tracked>();
  private readonly ops = new KeyedQueue();
  private readonly exits = new ExitNotifier();
  private events: Readable | undefined;
  private timer: NodeJS.Timeout | undefined;
  private polling = false;
  private closed = false;

  constructor(private readonly opts: DockerBackendOptions) {
    this.docker = opts.docker ?? new Dockerode(opts.dockerOptions);
    this.host = opts.host ?? '127.0.0.1';
    this.ledger = new CapacityLedger(resolveCapacity(opts.capacity));
  }

  async init(): Promise<void> {
    try {
      await this.docker.ping();
    } catch (err) {
      throw dockerError('connecting to Docker', err);
    }
    const containers = await this.listOurs(true);
    for (const info of containers) {
      const replicaId = info.Labels[REPLICA_ID_LABEL];
      if (!replicaId) continue;
      if (info.State === 'running') {
        // A container we cannot read (no published port) is left for start/stop to replace.
        const tracked = await this.trackFromInspect(replicaId, info.Id).catch(() => null);
        if (tracked) this.ledger.adopt(replicaId, tracked.resources);
      } else {
        const exitCode = await this.exitCodeOf(info.Id);
        this.replicas.set(replicaId, {
          replicaId,
          containerId: info.Id,
          handle: {
            replicaId,
            containerId: info.Id,
            host: this.host,
            port: 0,
            url: '',
            startedAt: 0,
          },
          resources: parseResources(info.Labels[RESOURCES_LABEL]),
          state: 'exited',
        });
        this.emit({ replicaId, code: exitCode, signal: null, at: Date.now() });
      }
    }
    await this.watchEvents();
    this.timer = setInterval(() => void this.poll(), this.opts.pollIntervalMs ?? 1000);
    this.timer.unref();
  }

  start(replicaId: string, spec: SessionSpec): Promise<ReplicaHandle> {
    if (!isValidReplicaId(replicaId)) {
      return Promise.reject(new FlotillaError('validation', `invalid replica id "${replicaId}"`));
    }
    if (this.closed) return Promise.reject(closedError());
    return this.ops.run(replicaId, () => this.doStart(replicaId, spec));
  }

  private async doStart(replicaId: string, spec: SessionSpec): Promise<ReplicaHandle> {
    if (!spec.image) {
      throw new FlotillaError(
        'validation',
        `replica ${replicaId}: the docker backend needs an image`,
        {
          details: [{ path: 'image', message: 'required by the docker backend' }],
        },
      );
    }
    const tracked = this.replicas.get(replicaId);
    if (tracked?.state === 'running') {
      const running = await this.isRunning(tracked.containerId);
      if (running) return tracked.handle;
      this.noticeDeath(tracked, await this.exitCodeOf(tracked.containerId));
    }
    // A container of an earlier session (ours or a crashed coordinator's) under the same id.
    for (const info of await this.listOurs(true, replicaId)) {
      if (info.State === 'running') {
        const adopted = await this.trackFromInspect(replicaId, info.Id);
        if (adopted) {
          this.ledger.adopt(replicaId, adopted.resources);
          return adopted.handle;
        }
      }
      await this.removeContainer(info.Id);
    }
    this.ledger.reserve(replicaId, spec.resources);
    try {
      return await this.createAndStart(replicaId, spec, spec.image);
    } catch (err) {
      this.ledger.release(replicaId);
      throw err instanceof FlotillaError ? err : dockerError(`starting replica ${replicaId}`, err);
    }
  }

  private async createAndStart(
    replicaId: string,
    spec: SessionSpec,
    image: string,
  ): Promise<ReplicaHandle> {
    await this.ensureImage(image);
    const containerPort = `${spec.port}/tcp`;
    const env = { ...spec.environ, PORT: String(spec.port), [REPLICA_ID_ENV]: replicaId };
    const hostConfig: Dockerode.HostConfig = {
      PortBindings: { [containerPort]: [{ HostIp: this.host, HostPort: '' }] },
      Init: true,
      // Bounded logs, like the process backend's: two files of 1 MiB.
      LogConfig: { Type: 'json-file', Config: { 'max-size': '1m', 'max-file': '2' } },
    };
    if (spec.resources.cpu > 0) hostConfig.NanoCpus = Math.round(spec.resources.cpu * 1e9);
    if (spec.resources.mem > 0) hostConfig.Memory = Math.round(spec.resources.mem);
    if (spec.resources.gpu > 0) {
      hostConfig.DeviceRequests = [
        { Driver: 'nvidia', Count: Math.ceil(spec.resources.gpu), Capabilities: [['gpu']] },
      ];
    }
    if (spec.workdir) hostConfig.Binds = [`${spec.workdir}:${spec.workdir}:ro`];
    if (this.opts.network) hostConfig.NetworkMode = this.opts.network;
    const options: Dockerode.ContainerCreateOptions = {
      name: containerName(replicaId, this.opts.scope),
      Image: image,
      Env: Object.entries(env).map(([k, v]) => `${k}=${v}`),
      ExposedPorts: { [containerPort]: {} },
      Labels: {
        [REPLICA_ID_LABEL]: replicaId,
        [MANAGED_LABEL]: 'true',
        [RESOURCES_LABEL]: JSON.stringify(spec.resources),
        [PORT_LABEL]: String(spec.port),
        ...(this.opts.scope ? { [SCOPE_LABEL]: this.opts.scope } : {}),
      },
      HostConfig: hostConfig,
    };
    if (spec.command.length > 0) options.Cmd = substitutePort(spec.command, spec.port);
    if (spec.workdir) options.WorkingDir = spec.workdir;
    let container: Dockerode.Container;
    try {
      container = await this.docker.createContainer(options);
    } catch (err) {
      if (statusCode(err) !== 409) throw err;
      // The name is taken by a leftover without our label: it is ours by name, replace it.
      await this.removeContainer(containerName(replicaId, this.opts.scope));
      container = await this.docker.createContainer(options);
    }
    try {
      await container.start();
    } catch (err) {
      await this.removeContainer(container.id);
      throw err;
    }
    const tracked = await this.trackFromInspect(replicaId, container.id, spec.resources);
    if (!tracked) {
      const code = await this.exitCodeOf(container.id);
      throw new FlotillaError(
        'internal',
        `replica ${replicaId}: container exited right after start (exit code ${code})`,
      );
    }
    return tracked.handle;
  }

  private async ensureImage(image: string): Promise<void> {
    try {
      await this.docker.getImage(image).inspect();
      return;
    } catch (err) {
      if (statusCode(err) !== 404 || this.opts.pullImages === false) throw err;
    }
    const stream = await this.docker.pull(image);
    await new Promise<void>((resolve, reject) => {
      this.docker.modem.followProgress(stream, (err: Error | null) =>
        err ? reject(err) : resolve(),
      );
    });
  }

  /** Tracks a running container from its inspection; null when it is not running. */
  private async trackFromInspect(
    replicaId: string,
    containerId: string,
    resources?: ResourceSlots,
  ): Promise<Tracked | null> {
    const info = await this.docker.getContainer(containerId).inspect();
    if (!info.State.Running) return null;
    const labels = info.Config.Labels ?? {};
    const containerPort = `${labels[PORT_LABEL] ?? ''}/tcp`;
    const binding = info.NetworkSettings.Ports?.[containerPort]?.[0];
    const port = Number(binding?.HostPort);
    if (!Number.isInteger(port) || port <= 0) {
      throw new FlotillaError('internal', `replica ${replicaId}: container has no published port`);
    }
    const tracked: Tracked = {
      replicaId,
      containerId: info.Id,
      resources: resources ?? parseResources(labels[RESOURCES_LABEL]),
      state: 'running',
      handle: {
        replicaId,
        containerId: info.Id,
        host: this.host,
        port,
        url: httpUrl(this.host, port),
        startedAt: Date.parse(info.State.StartedAt) || Date.now(),
      },
    };
    if (info.State.Pid) tracked.handle.pid = info.State.Pid;
    this.replicas.set(replicaId, tracked);
    return tracked;
  }

  stop(replicaId: string, graceMs: number): Promise<void> {
    return this.ops.run(replicaId, () => this.doStop(replicaId, graceMs));
  }

  private async doStop(replicaId: string, graceMs: number): Promise<void> {
    const tracked = this.replicas.get(replicaId);
    if (tracked) tracked.state = 'stopping';
    const ids = new Set<string>(tracked ? [tracked.containerId] : []);
    for (const info of await this.listOurs(true, replicaId)) ids.add(info.Id);
    for (const id of ids) {
      try {
        await this.docker.getContainer(id).stop({ t: Math.ceil(Math.max(0, graceMs) / 1000) });
      } catch (err) {
        // 304: already stopped; 404: already gone.
        if (statusCode(err) !== 304 && statusCode(err) !== 404) {
          throw dockerError(`stopping replica ${replicaId}`, err);
        }
      }
      await this.removeContainer(id);
    }
    if (tracked) tracked.state = 'exited';
    this.ledger.release(replicaId);
  }

  async status(replicaId: string): Promise<ReplicaStatus> {
    const tracked = this.replicas.get(replicaId);
    if (!tracked) return 'unknown';
    if (tracked.state === 'running' && !(await this.isRunning(tracked.containerId))) {
      this.noticeDeath(tracked, await this.exitCodeOf(tracked.containerId));
    }
    return tracked.state === 'exited' ? 'exited' : 'running';
  }

  async list(): Promise<ReplicaHandle[]> {
    return [...this.replicas.values()].filter((t) => t.state === 'running').map((t) => t.handle);
  }

  async usage(replicaId: string): Promise<ReplicaUsage | null> {
    const tracked = this.replicas.get(replicaId);
    if (tracked?.state !== 'running') return null;
    try {
      // One reading, at once (`one-shot`, Engine API 1.41+): no second sample to wait for.
      const stats = (await this.docker
        .getContainer(tracked.containerId)
        .stats({ stream: false, 'one-shot': true } as { stream: false })) as unknown as EngineStats;
      const used = usageFromStats(stats);
      return used ? { ...used, requested: tracked.resources } : null;
    } catch (err) {
      if (statusCode(err) === 404) return null;
      throw dockerError(`reading the usage of ${replicaId}`, err);
    }
  }

  async logs(replicaId: string, opts?: { tailBytes?: number }): Promise<string> {
    const tracked = this.replicas.get(replicaId);
    const tailBytes = Math.max(0, opts?.tailBytes ?? DEFAULT_TAIL_BYTES);
    if (!tracked || tailBytes === 0) return '';
    try {
      // Docker tails by lines; ask for plenty and cut to bytes.
      const raw = await this.docker
        .getContainer(tracked.containerId)
        .logs({ stdout: true, stderr: true, follow: false, tail: 2000 });
      const text = demuxDockerLogs(Buffer.isBuffer(raw) ? raw : Buffer.from(String(raw)));
      const bytes = Buffer.from(text, 'utf8');
      return bytes.subarray(Math.max(0, bytes.length - tailBytes)).toString('utf8');
    } catch (err) {
      if (statusCode(err) === 404) return '';
      throw dockerError(`reading logs of ${replicaId}`, err);
    }
  }

  onExit(listener: (exit: ReplicaExit) => void): () => void {
    return this.exits.subscribe(listener);
  }

  capacity(): { total: ResourceSlots; used: ResourceSlots } {
    return this.ledger.snapshot();
  }

  async close(opts: { stopReplicas: boolean; graceMs?: number }): Promise<void> {
    if (this.closed) return;
    await stopAtClose(opts, this.ops, this.replicas, (id, grace) => this.stop(id, grace));
    this.closed = true;
    if (this.timer) clearInterval(this.timer);
    this.events?.destroy();
    this.events = undefined;
    this.exits.clear();
  }

  // --- internals -------------------------------------------------------------------------------

  private async listOurs(all: boolean, replicaId?: string): Promise<Dockerode.ContainerInfo[]> {
    const label = replicaId ? [`${REPLICA_ID_LABEL}=${replicaId}`] : [`${MANAGED_LABEL}=true`];
    if (this.opts.scope) label.push(`${SCOPE_LABEL}=${this.opts.scope}`);
    try {
      return await this.docker.listContainers({ all, filters: { label } });
    } catch (err) {
      throw dockerError('listing containers', err);
    }
  }

  private async isRunning(containerId: string): Promise<boolean> {
    try {
      return (await this.docker.getContainer(containerId).inspect()).State.Running;
    } catch (err) {
      if (statusCode(err) === 404) return false;
      throw dockerError('inspecting a container', err);
    }
  }

  private async exitCodeOf(containerId: string): Promise<number | null> {
    try {
      return (await this.docker.getContainer(containerId).inspect()).State.ExitCode;
    } catch {
      return null;
    }
  }

  private async removeContainer(idOrName: string): Promise<void> {
    try {
      await this.docker.getContainer(idOrName).remove({ force: true, v: true });
    } catch (err) {
      if (statusCode(err) !== 404) throw dockerError('removing a container', err);
    }
  }

  private async watchEvents(): Promise<void> {
    if (this.closed) return;
    try {
      const stream = (await this.docker.getEvents({
        filters: { type: ['container'], event: ['die'], label: [`${MANAGED_LABEL}=true`] },
      })) as Readable;
      this.events = stream;
      let buffered = '';
      stream.on('data', (chunk: Buffer) => {
        buffered += chunk.toString('utf8');
        let nl = buffered.indexOf('\n');
        while (nl >= 0) {
          const line = buffered.slice(0, nl).trim();
          buffered = buffered.slice(nl + 1);
          if (line) this.onDockerEvent(line);
          nl = buffered.indexOf('\n');
        }
      });
      const restart = () => {
        if (this.events === stream && !this.closed) {
          this.events = undefined;
          setTimeout(() => void this.watchEvents(), 1000).unref();
        }
      };
      stream.on('end', restart);
      stream.on('error', restart);
    } catch {
      // The poll covers deaths until the stream is back.
      if (!this.closed) setTimeout(() => void this.watchEvents(), 1000).unref();
    }
  }

  private onDockerEvent(line: string): void {
    let event: { Actor?: { ID?: string; Attributes?: Record<string, string> } };
    try {
      event = JSON.parse(line);
    } catch {
      return;
    }
    const replicaId = event.Actor?.Attributes?.[REPLICA_ID_LABEL];
    const tracked = replicaId ? this.replicas.get(replicaId) : undefined;
    if (!tracked || tracked.containerId !== event.Actor?.ID) return;
    const code = Number(event.Actor?.Attributes?.exitCode);
    this.noticeDeath(tracked, Number.isInteger(code) ? code : null);
  }

  private async poll(): Promise<void> {
    if (this.polling || this.closed) return;
    this.polling = true;
    try {
      const running = new Set((await this.listOurs(false)).map((c) => c.Id));
      for (const tracked of this.replicas.values()) {
        if (tracked.state === 'running' && !running.has(tracked.containerId)) {
          this.noticeDeath(tracked, await this.exitCodeOf(tracked.containerId));
        }
      }
    } catch {
      // Docker briefly unavailable: try again on the next tick.
    } finally {
      this.polling = false;
    }
  }

  private noticeDeath(tracked: Tracked, code: number | null): void {
    if (tracked.state !== 'running') return;
    tracked.state = 'exited';
    this.ledger.release(tracked.replicaId);
    this.emit({ replicaId: tracked.replicaId, code, signal: null, at: Date.now() });
  }

  private emit(exit: ReplicaExit): void {
    if (!this.closed) this.exits.emit(exit);
  }
}

/** The part of the Engine API's container stats that usage reads. */
export interface EngineStats {
  read?: string;
  cpu_stats?: { cpu_usage?: { total_usage?: number } };
  memory_stats?: { usage?: number; stats?: Record<string, number | undefined> };
}

/**
 * CPU seconds and memory from one stats reading. Memory as `docker stats` computes it: usage
 * minus the inactive page cache (`total_inactive_file` on cgroup v1, `inactive_file` on v2).
 * Null when the container is not running (the engine reports no CPU usage then).
 */
export function usageFromStats(
  stats: EngineStats,
): { cpuSeconds: number; rssBytes: number } | null {
  const cpuNs = stats.cpu_stats?.cpu_usage?.total_usage;
  const mem = stats.memory_stats?.usage;
  if (typeof cpuNs !== 'number' || typeof mem !== 'number') return null;
  const m = stats.memory_stats?.stats ?? {};
  const inactive = m.total_inactive_file ?? m.inactive_file ?? 0;
  return { cpuSeconds: cpuNs / 1e9, rssBytes: Math.max(0, mem - (inactive < mem ? inactive : 0)) };
}

function closedError(): FlotillaError {
  return new FlotillaError('invalid_state', 'the docker backend is closed');
}

/**
 * Creates the Docker backend, adopting running containers labelled with a replica id and
 * queueing onExit reports for exited ones. Throws FlotillaError('dependency_unavailable') when
 * no Docker engine answers.
 */
export async function createDockerBackend(
  opts: DockerBackendOptions = {},
): Promise<ReplicaBackend> {
  const backend = new DockerBackend(opts);
  await backend.init();
  return backend;
}

/** Null when a Docker engine answers, else why not (for skipping Docker-only work). */
export async function dockerUnavailableReason(
  dockerOptions?: Dockerode.DockerOptions,
): Promise<string | null> {
  try {
    await new Dockerode(dockerOptions).ping();
    return null;
  } catch (err) {
    return dockerError('ping', err).message;
  }
}
