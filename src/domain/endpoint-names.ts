/**
 * Endpoints and deployments share one namespace (the proxy serves both at `/{name}/...`),
 * so an endpoint cannot take a live deployment's name; creating an endpoint never replaces
 * one (replacing is an explicit put). The embedded API and the HTTP API both check here.
 */
import { endpointExists, nameTakenByDeployment } from './errors.ts';

export function assertEndpointNameFree(
  name: string,
  taken: {
    /** Names of the deployments that are not TERMINATED. */
    liveDeployments: readonly string[];
    /** Names of the existing endpoints; checked only when `mode` is `create`. */
    endpoints: readonly string[];
    mode: 'create' | 'replace';
  },
): void {
  if (taken.mode === 'create' && taken.endpoints.includes(name)) throw endpointExists(name);
  if (taken.liveDeployments.includes(name)) throw nameTakenByDeployment(name);
}
