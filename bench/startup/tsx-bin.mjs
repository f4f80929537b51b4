#!/usr/bin/env node
// The bin as it was before dist/: runs the TypeScript sources through tsx (the baseline of
// bench/startup; for development, not shipped).
import { register } from 'tsx/esm/api';

register();
const { main } = await import('../../src/cli/main.ts');
main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (err) => {
    console.error(`flotilla: ${err instanceof Error ? err.message : String(err)}`);
    process.exitCode = 1;
  },
);
