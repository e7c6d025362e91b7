// Runs `prewarm <command>` as a real child process, as an operator would, so that a fault that
// kills the process (an unhandled 'error' event) fails the test instead of the test runner.
import { spawn, type ChildProcess } from 'node:child_process';

export interface PrewarmProcess {
  child: ChildProcess;
  /** Everything the process wrote to stderr so far (its log lines and error messages). */
  stderr(): string;
  /** Resolves with the exit code (or the signal's name) when the process has exited. */
  exited: Promise<number | string>;
  /** True while the process runs. */
  alive(): boolean;
  /** Sends `signal` and waits for the exit. */
  stop(signal?: NodeJS.Signals): Promise<number | string>;
}

export function spawnPrewarm(args: string[], env: Record<string, string>): PrewarmProcess {
  return watchProcess(['src/cli/bin.mjs', ...args], env);
}

/** Runs a TypeScript file of the tests (a process wired like an entry point) as a child process. */
export function spawnNodeScript(script: string, env: Record<string, string>): PrewarmProcess {
  return watchProcess(['--import', 'tsx', script], env);
}

function watchProcess(nodeArgs: string[], env: Record<string, string>): PrewarmProcess {
  const child = spawn(process.execPath, nodeArgs, {
    env: { ...process.env, PREWARM_LOG_LEVEL: 'warn', ...env },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let stderr = '';
  child.stderr?.setEncoding('utf8').on('data', (chunk: string) => {
    stderr += chunk;
  });
  let running = true;
  const exited = new Promise<number | string>((resolve) => {
    child.once('exit', (code, signal) => {
      running = false;
      resolve(code ?? signal ?? 'unknown');
    });
  });
  return {
    child,
    stderr: () => stderr,
    exited,
    alive: () => running,
    async stop(signal = 'SIGTERM') {
      if (running) child.kill(signal);
      return exited;
    },
  };
}

/** Polls `url` until it answers 2xx, the process exits, or `timeoutMs` passes. */
export async function waitUntilAnswering(url: string, processUnderTest: PrewarmProcess, timeoutMs = 30_000): Promise<void> {
  const giveUpAt = Date.now() + timeoutMs;
  for (;;) {
    if (!processUnderTest.alive()) throw new Error(`the process exited before answering:\n${processUnderTest.stderr()}`);
    try {
      const response = await fetch(url, { signal: AbortSignal.timeout(1_000) });
      if (response.ok) return;
    } catch {
      // not listening yet
    }
    if (Date.now() > giveUpAt) throw new Error(`${url} did not answer within ${timeoutMs} ms:\n${processUnderTest.stderr()}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}
