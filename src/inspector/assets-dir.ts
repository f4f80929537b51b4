/**
 * The inspector's static files (index.html, app.js, app.css). They are not TypeScript, so the
 * build does not copy them: they stay in src/inspector/assets, which the package ships, and are
 * found there whether this module runs from src/ (tsx, tests) or from dist/src/ (the bin).
 */
import { fileURLToPath } from 'node:url';

const fromDist = /\/dist\/src\/inspector\/[^/]+$/.test(import.meta.url);

export const INSPECTOR_ASSETS_DIR = fileURLToPath(
  new URL(fromDist ? '../../../src/inspector/assets/' : './assets/', import.meta.url),
);
