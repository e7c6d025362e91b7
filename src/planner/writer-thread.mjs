// Entry of the chunk writer thread (src/planner/thread-persister.ts). Threads do not inherit a
// loader registered through tsx's API (as `prewarm` registers it), so this one registers its own.
import { register } from 'tsx/esm/api';

register();
await import('./writer-thread.ts');
