import type { TestProject } from 'vitest/node';
import {
  harnessProcessesAlive,
  killHarnessProcesses,
  MissingServiceError,
  type ServiceUrls,
  startServices,
} from './services.ts';

declare module 'vitest' {
  export interface ProvidedContext {
    services: ServiceUrls;
  }
}

export default async function setup(project: TestProject) {
  let started: Awaited<ReturnType<typeof startServices>>;
  try {
    started = await startServices();
  } catch (err) {
    if (err instanceof MissingServiceError) {
      // One line per missing service, naming what to install; the run fails.
      throw new Error(`test services unavailable:\n${err.message}`);
    }
    throw err;
  }
  const { urls } = started;
  console.log(
    `[services] postgres: ${urls.sources.postgres}; redis: ${urls.sources.redis}; etcd: ${urls.sources.etcd}`,
  );
  project.provide('services', urls);
  return async () => {
    await started.stop();
    // Nothing the harness started may outlive the run: name each survivor, kill it, fail.
    const alive = harnessProcessesAlive();
    if (alive.length > 0) {
      killHarnessProcesses();
      throw new Error(`test harness left processes running after teardown: ${alive.join(', ')}`);
    }
  };
}
