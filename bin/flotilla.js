#!/usr/bin/env node
// Runs the TypeScript sources through tsx: one way to run Flotilla, no stale build to forget.
import { register } from 'tsx/esm/api';

register();
const { main } = await import('../src/cli/main.ts');
main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (err) => {
    console.error(`flotilla: ${err instanceof Error ? err.message : String(err)}`);
    process.exitCode = 1;
  },
);
