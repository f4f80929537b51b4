#!/usr/bin/env node
// Runs the compiled JavaScript in dist/ (`npm run build`; `npm ci` and `npm install` build it
// through the `prepare` script). No TypeScript loader at run time: tsx is for development only.
import { existsSync } from 'node:fs';

const entry = new URL('../dist/src/cli/main.js', import.meta.url);
if (!existsSync(entry)) {
  console.error('flotilla: dist/ is not built; run `npm run build` in the Flotilla folder');
  process.exit(1);
}
const { main } = await import(entry.href);
main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (err) => {
    console.error(`flotilla: ${err instanceof Error ? err.message : String(err)}`);
    process.exitCode = 1;
  },
);
