// The cache entry's layout (src/sets/cache-entry.ts writes it, src/sets/entry-reader.ts reads it
// back without msgpackr): one MessagePack map, these keys in this order.

/** The entry layout: `items` (the packed block) and `count`. Entries without `v` hold two arrays. */
export const ENTRY_VERSION = 2;

/** The map's keys in the order written. */
export const KEY_NAMES = ['v', 'id', 'source', 'runId', 'holdout', 'computedAt', 'expiresAt', 'modelVersion', 'computeMs', 'count', 'items'] as const;

/** Each key as a MessagePack fixstr. */
export const KEYS = Object.fromEntries(KEY_NAMES.map((name) => [name, Buffer.concat([Buffer.of(0xa0 | name.length), Buffer.from(name, 'latin1')])])) as Record<
  (typeof KEY_NAMES)[number],
  Buffer
>;
