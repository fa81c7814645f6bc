#!/usr/bin/env node
// The `taskgrid` launcher. A build (npm run build, or `taskgrid start`) runs the compiled CLI
// from dist/; without one, or when a source file changed after it, the CLI runs from src/
// through tsx (a runtime dependency), so that `npx taskgrid ...` always runs the code as it
// is. Plain JavaScript: it must run before anything can compile TypeScript.
import { existsSync, readdirSync, statSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const built = new URL('../dist/src/cli/main.js', import.meta.url);
const sources = fileURLToPath(new URL('../src', import.meta.url));

/** Newest modification time of the .ts files under a folder (a few dozen stat calls). */
function newest(dir) {
  let latest = 0;
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = `${dir}/${entry.name}`;
    if (entry.isDirectory()) latest = Math.max(latest, newest(path));
    else if (entry.name.endsWith('.ts')) latest = Math.max(latest, statSync(path).mtimeMs);
  }
  return latest;
}

function buildIsCurrent() {
  if (!existsSync(built)) return false;
  if (!existsSync(sources)) return true; // an installed package ships dist/ only
  return statSync(built).mtimeMs >= newest(sources);
}

let cli;
if (buildIsCurrent()) {
  cli = await import(built.href);
} else {
  const { register } = await import('tsx/esm/api');
  register();
  cli = await import(new URL('../src/cli/main.ts', import.meta.url).href);
}
await cli.runAsProcess(process.argv);
