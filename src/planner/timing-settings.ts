/**
 * A window's timing setting (timing.ts), apart from the code that applies it, so that the window
 * store does not import the planner's queue code.
 */

export type TimingMode = 'midnight' | 'predicted';

export interface WindowTiming {
  /** `midnight`: every chunk at the occurrence (the default). `predicted`: each user before their likely login. */
  mode: TimingMode;
  /** Length of the slots compute times fall on, from the occurrence. Default 1 h. */
  slotMs: number;
  /**
   * Accepted chance that a user's first login comes before their set, on horizons under a day and
   * in a window's first timed run (after a timed run on daily horizons sets chain and every user is
   * placed for young serves: src/planner/timing.ts). Default 0.02.
   */
  risk: number;
}

export const DEFAULT_TIMING: Readonly<WindowTiming> = Object.freeze({ mode: 'midnight', slotMs: 3_600_000, risk: 0.02 });
