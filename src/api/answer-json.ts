import type { ServeResult } from '../serving/service.ts';

/**
 * The body of a 200 from the recommendations route, written directly: the login path's answer
 * in one string, without the intermediate object the schema serializer needs (an ISO copy of the
 * result) nor its per-field checks. The same bytes as `recommendationsResponse`
 * (src/api/schemas.ts) serialized by Fastify — the same properties in the same order, numbers as
 * JSON writes them — which test/answer-json.test.ts checks against the schema's own serializer.
 * The schema still documents the route (OpenAPI); a new field goes in both.
 */
export function answerJson(result: ServeResult): string {
  let items = '[';
  for (let i = 0; i < result.items.length; i++) {
    const item = result.items[i]!;
    items += `${i === 0 ? '' : ','}{"itemId":${JSON.stringify(item.itemId)},"score":${jsonNumber(item.score)}}`;
  }
  items += ']';
  const staleness = result.stalenessMs === null ? 'null' : jsonNumber(Math.round(result.stalenessMs));
  const missed = result.missedInteractions === null ? 'null' : jsonNumber(result.missedInteractions);
  return (
    `{"userId":${JSON.stringify(result.userId)},"items":${items},"source":"${result.source}",` +
    `"computedAt":${isoOrNull(result.computedAt)},"expiresAt":${isoOrNull(result.expiresAt)},` +
    `"stalenessMs":${staleness},"behind":${result.behind},"missedInteractions":${missed},` +
    `"modelVersion":${JSON.stringify(result.modelVersion)}${result.reason === undefined ? '' : `,"reason":"${result.reason}"`}}`
  );
}

/** JSON's number: a finite number as written, anything else null (as the schema serializer). */
function jsonNumber(value: number): string {
  return Number.isFinite(value) ? `${value}` : 'null';
}

function isoOrNull(at: Date | null): string {
  return at === null ? 'null' : `"${at.toISOString()}"`;
}
