import type { Command } from 'commander';
import { migrate } from '../../db/migrate.ts';
import { action, createCliContext, openPool } from '../runtime.ts';

export function registerMigrate(program: Command): void {
  program
    .command('migrate')
    .description('apply the database migrations that have not run yet (safe to repeat and to run concurrently)')
    .action(
      action(async () => {
        const context = createCliContext();
        const pool = openPool(context, 'prewarm-migrate');
        try {
          const applied = await migrate({ pool, schema: context.config.dbSchema, log: context.log });
          process.stdout.write(applied.length === 0 ? 'migrations: up to date\n' : `migrations applied: ${applied.join(', ')}\n`);
        } finally {
          await pool.end();
        }
      }),
    );
}
