import net from 'node:net';

function answers(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect({ host: '127.0.0.1', port });
    socket.setTimeout(2_000);
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
    socket.once('timeout', () => {
      socket.destroy();
      resolve(false);
    });
  });
}

/** Fails the run at once, with the fix, when PostgreSQL or Redis is not there. */
export default async function globalSetup(): Promise<void> {
  const missing: string[] = [];
  if (!(await answers(5432))) missing.push('PostgreSQL on 127.0.0.1:5432');
  if (!(await answers(6379))) missing.push('Redis on 127.0.0.1:6379');
  if (missing.length > 0) {
    throw new Error(`integration tests need ${missing.join(' and ')}; start them with scripts/services.sh (see README)`);
  }
}
