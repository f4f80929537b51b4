/** Replica backends: the port and its adapters. The composition root picks one. */
export type {
  ReplicaBackend,
  ReplicaExit,
  ReplicaHandle,
  ReplicaStatus,
} from './backend.ts';
export {
  DEFAULT_STOP_GRACE_MS,
  isValidReplicaId,
  REPLICA_ID_ENV,
  REPLICA_ID_LABEL,
  substitutePort,
} from './backend.ts';
export { CapacityLedger, machineCapacity, resolveCapacity } from './capacity.ts';
export {
  createDockerBackend,
  type DockerBackendOptions,
  dockerUnavailableReason,
} from './docker-backend.ts';
export { createProcessBackend, type ProcessBackendOptions } from './process-backend.ts';
