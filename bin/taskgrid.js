#!/usr/bin/env node
// The `taskgrid` launcher. A built package (npm run build) runs the compiled CLI from dist/;
// a source checkout without a build runs src/cli/main.ts through tsx (a runtime dependency),
// so that `npx taskgrid ...` works right after `npm install`. Plain JavaScript: it must run
// before anything can compile TypeScript.
import { existsSync } from 'node:fs';

const built = new URL('../dist/src/cli/main.js', import.meta.url);
let cli;
if (existsSync(built)) {
  cli = await import(built.href);
} else {
  const { register } = await import('tsx/esm/api');
  register();
  cli = await import(new URL('../src/cli/main.ts', import.meta.url).href);
}
await cli.runAsProcess(process.argv);
