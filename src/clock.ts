/**
 * Everything that reads time takes a Clock, so that a replay can walk months of a log in
 * minutes while the real components believe it is the log's "now".
 */
export interface Clock {
  now(): Date;
}

export const systemClock: Clock = { now: () => new Date() };

export class VirtualClock implements Clock {
  #ms: number;

  constructor(start: Date | number) {
    this.#ms = typeof start === 'number' ? start : start.getTime();
  }

  now(): Date {
    return new Date(this.#ms);
  }

  /** Moves time forward; a virtual clock never runs backwards. */
  set(to: Date | number): void {
    const ms = typeof to === 'number' ? to : to.getTime();
    if (ms < this.#ms) throw new RangeError(`virtual clock cannot go back from ${new Date(this.#ms).toISOString()}`);
    this.#ms = ms;
  }

  advance(ms: number): void {
    this.set(this.#ms + ms);
  }
}
