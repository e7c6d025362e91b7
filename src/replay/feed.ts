import type { Queryable } from '../db/pool.ts';
import type { InteractionEvent } from './generate.ts';

const BATCH = 20_000;

/** Stores interactions as the replay's clock reaches them (duplicates ignored, as on import). */
export async function insertInteractions(db: Queryable, interactions: readonly InteractionEvent[]): Promise<void> {
  for (let i = 0; i < interactions.length; i += BATCH) {
    const batch = interactions.slice(i, i + BATCH);
    await db.query({
      text: `INSERT INTO interactions (user_id, item_id, at, weight)
             SELECT * FROM unnest($1::text[], $2::text[], $3::timestamptz[], $4::real[])
             ON CONFLICT DO NOTHING`,
      values: [batch.map((x) => x.userId), batch.map((x) => x.itemId), batch.map((x) => x.at.toISOString()), batch.map((x) => x.weight)],
    });
  }
}
