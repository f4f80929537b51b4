/**
 * What to tell a running HAProxy so its servers match the table, without a reload. Pure: the
 * servers HAProxy has (as last applied) and the ones the table wants in, runtime API commands
 * out. Only valid when the structure (structureKey) is the same; otherwise the caller reloads.
 */
import { type BackendSpec, type HaproxyPaths, mapValue, type ServerSpec } from './config.ts';

/** A server as applied; `removing` while it waits (in maintenance) for its last request to end. */
export type AppliedServer = ServerSpec & { removing?: boolean };

/** Applied servers per backend name. */
export type AppliedServers = Map<string, Map<string, AppliedServer>>;

export interface ServerDiff {
  /** Runtime API commands, in order. */
  commands: string[];
  /** Servers put in maintenance that are to be deleted once their connections are gone. */
  removals: { backend: string; server: string }[];
  /** The servers HAProxy has once `commands` ran. */
  next: AppliedServers;
}

export function appliedFrom(backends: BackendSpec[]): AppliedServers {
  return new Map(backends.map((b) => [b.name, new Map(b.servers.map((s) => [s.name, { ...s }]))]));
}

function addr(s: ServerSpec): string {
  return s.host.includes(':') ? `[${s.host}]:${s.port}` : `${s.host}:${s.port}`;
}

export function diffServers(
  applied: AppliedServers,
  desired: BackendSpec[],
  paths: HaproxyPaths,
): ServerDiff {
  const commands: string[] = [];
  const removals: ServerDiff['removals'] = [];
  const next: AppliedServers = new Map();
  for (const b of desired) {
    const have = applied.get(b.name) ?? new Map<string, AppliedServer>();
    const now = new Map<string, AppliedServer>();
    next.set(b.name, now);
    const id = (s: ServerSpec) => `${b.name}/${s.name}`;
    for (const want of b.servers) {
      const old = have.get(want.name);
      now.set(want.name, { ...want });
      if (!old) {
        // Added servers start in maintenance; one that is draining already stays there.
        commands.push(
          `add server ${id(want)} ${addr(want)} weight ${want.weight} maxconn ${want.maxconn}`,
          `add map ${paths.replicasMap} ${want.name} ${mapValue(want.replicaId)}`,
          `add map ${paths.failStaticMap} ${want.name} ${want.failStatic ? 1 : 0}`,
        );
        if (want.state === 'ready') commands.push(`set server ${id(want)} state ready`);
        else if (want.state === 'drain') now.set(want.name, { ...want, state: 'maint' });
        continue;
      }
      if (old.host !== want.host || old.port !== want.port) {
        commands.push(`set server ${id(want)} addr ${want.host} port ${want.port}`);
      }
      if (old.maxconn !== want.maxconn) {
        commands.push(`set maxconn server ${id(want)} ${want.maxconn}`);
      }
      if (old.weight !== want.weight && want.state !== 'drain') {
        commands.push(`set server ${id(want)} weight ${want.weight}`);
      }
      if (old.replicaId !== want.replicaId) {
        commands.push(`set map ${paths.replicasMap} ${want.name} ${mapValue(want.replicaId)}`);
      }
      if (old.failStatic !== want.failStatic) {
        commands.push(`set map ${paths.failStaticMap} ${want.name} ${want.failStatic ? 1 : 0}`);
      }
      const oldState = old.removing ? 'maint' : old.state;
      if (oldState !== want.state) {
        if (want.state === 'drain' && oldState === 'maint') {
          // Nothing is in flight on a server in maintenance: it stays there.
          now.set(want.name, { ...want, state: 'maint' });
        } else {
          commands.push(`set server ${id(want)} state ${want.state}`);
        }
      }
    }
    for (const [name, old] of have) {
      if (now.has(name)) continue;
      now.set(name, { ...old, state: 'maint', removing: true });
      if (!old.removing) {
        commands.push(`set server ${b.name}/${name} state maint`);
        removals.push({ backend: b.name, server: name });
      }
    }
  }
  return { commands, removals, next };
}

/** The commands that delete a server that was put in maintenance, and its map entries. */
export function deleteCommands(backend: string, server: string, paths: HaproxyPaths): string[] {
  return [
    `del server ${backend}/${server}`,
    `del map ${paths.replicasMap} ${server}`,
    `del map ${paths.failStaticMap} ${server}`,
  ];
}
