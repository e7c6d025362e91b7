// `npm run build` (and `npm pack`, through prepack): compiles src/ and workers/ into dist/ with
// their type declarations, and copies the SQL migrations to dist/migrations, where the compiled
// dist/src/db/migrate.js finds them by the same relative path (../../migrations) as the sources
// find migrations/. dist/ is emptied first so that no output of a deleted source ever ships.
import { spawnSync } from 'node:child_process';
import { cpSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
const tsc = createRequire(import.meta.url).resolve('typescript/bin/tsc');

rmSync(join(root, 'dist'), { recursive: true, force: true });
const compiled = spawnSync(process.execPath, [tsc, '-p', 'tsconfig.build.json'], { cwd: root, stdio: 'inherit' });
if (compiled.status !== 0) process.exit(compiled.status ?? 1);
cpSync(join(root, 'migrations'), join(root, 'dist', 'migrations'), { recursive: true });
