#!/usr/bin/env node
// The compiled CLI lives in dist/ (built by `npm install` through the `prepare` script).
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
const main = new URL('../dist/services/cli/main.js', import.meta.url);
if (!existsSync(fileURLToPath(main))) {
  console.error('aetn: dist/ is missing; run `npm run build` in the project directory first.');
  process.exit(2);
}
await import(main.href);
