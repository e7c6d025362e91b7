#!/usr/bin/env node
// The `prewarm` command: runs the TypeScript sources through tsx, so a checkout works after
// `npm ci` with no build step.
import { register } from 'tsx/esm/api';

register();
const { main } = await import('./main.ts');
await main(process.argv);
