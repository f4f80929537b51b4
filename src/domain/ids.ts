import { v7 as uuidv7 } from 'uuid';

/** Sortable, unique ids (UUIDv7) for deployments, replicas and routes. */
export function newId(): string {
  return uuidv7();
}
