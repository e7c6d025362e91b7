import { randomUUID } from 'node:crypto';

/**
 * A UUID version 7 (RFC 9562): the first 48 bits are the Unix time in milliseconds, the rest
 * random. Serves and on-demand sets are keyed by their id in B-trees of up to tens of millions of
 * rows a partition; a random (v4) key lands each insert on a random leaf page — at that size, a
 * page that is rarely cached — where a time-ordered one appends near the right edge. Built on
 * randomUUID (its pool of random bytes is what makes it cheap): its version nibble and the 48
 * bits before it are replaced, its variant and remaining 74 random bits kept.
 */
export function timeOrderedId(nowMs: number = Date.now()): string {
  const time = Math.max(0, Math.min(2 ** 48 - 1, Math.floor(nowMs))).toString(16).padStart(12, '0');
  const random = randomUUID();
  // xxxxxxxx-xxxx-4xxx-yxxx-xxxxxxxxxxxx → tttttttt-tttt-7xxx-yxxx-xxxxxxxxxxxx
  return `${time.slice(0, 8)}-${time.slice(8, 12)}-7${random.slice(15)}`;
}
