#!/usr/bin/env node
// The `prewarm` command. In a checkout the TypeScript sources sit next to this file: they run
// through tsx, so `npx prewarm` works after `npm ci` with no build step and never runs a stale
// dist/. The package (`npm pack`) ships no sources, only dist/: there it runs the compiled
// JavaScript on plain Node, and tsx (a dev dependency) is never loaded.
import { existsSync } from 'node:fs';

const source = new URL('./main.ts', import.meta.url);
let main;
if (existsSync(source)) {
  const { register } = await import('tsx/esm/api');
  register();
  ({ main } = await import(source.href));
} else {
  ({ main } = await import('../../dist/src/cli/main.js'));
}
await main(process.argv);
