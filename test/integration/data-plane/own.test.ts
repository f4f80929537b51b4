/** The data-plane contract against Flotilla's own proxy (src/proxy). */
import { createProxy } from '../../../src/proxy/proxy-server.ts';
import { dataPlaneContract } from './contract.ts';

dataPlaneContract({
  name: 'own proxy',
  capabilities: {
    resolvesDotSegments: true,
    routeUrlBasePath: true,
    stripsConnectionNamedHeaders: true,
    outlierEjection: true,
    inflightExact: true,
  },
  start: (source) => createProxy({ source }),
  // It applies a table synchronously when the source publishes it.
  settled: async () => {},
});
