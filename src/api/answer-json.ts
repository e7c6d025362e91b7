import type { ServeResult } from '../serving/service.ts';

/**
 * The body of a 200 from the recommendations route, written directly as UTF-8 bytes: the same
 * bytes as `recommendationsResponse` (src/api/schemas.ts) serialized by Fastify — the same
 * properties in the same order, strings escaped and numbers written as JSON writes them — which
 * test/answer-json.test.ts checks against the schema's own serializer. The schema still documents
 * the route (OpenAPI); a new field goes in both.
 *
 * Bytes rather than a string: a string answer was built from ~80 pieces (each item's escaped id,
 * score and punctuation) joined into intermediate strings, then measured (`Buffer.byteLength`)
 * and encoded to UTF-8 again by the socket write. Written into one buffer, the answer allocates
 * the buffer and the scores' text, and the socket takes it as it is: the route's allocations per
 * login fell from ≈6.3 KB to ≈1.1 KB (V8's sampling heap profiler under the serve bench).
 */
export function answerJson(result: ServeResult): Buffer {
  const out = new Writer(boundOf(result));
  out.ascii('{"userId":');
  out.string(result.userId);
  out.ascii(',"items":[');
  const items = result.items;
  for (let i = 0; i < items.length; i++) {
    const item = items[i]!;
    out.ascii(i === 0 ? '{"itemId":' : ',{"itemId":');
    out.string(item.itemId);
    out.ascii(',"score":');
    out.ascii(jsonNumber(item.score));
    out.ascii('}');
  }
  out.ascii('],"source":"');
  out.ascii(result.source);
  out.ascii('","computedAt":');
  out.ascii(isoOrNull(result.computedAt));
  out.ascii(',"expiresAt":');
  out.ascii(isoOrNull(result.expiresAt));
  out.ascii(',"stalenessMs":');
  out.ascii(result.stalenessMs === null ? 'null' : jsonNumber(Math.round(result.stalenessMs)));
  out.ascii(result.behind ? ',"behind":true,"missedInteractions":' : ',"behind":false,"missedInteractions":');
  out.ascii(result.missedInteractions === null ? 'null' : jsonNumber(result.missedInteractions));
  out.ascii(',"modelVersion":');
  out.string(result.modelVersion);
  if (result.reason !== undefined) {
    out.ascii(',"reason":"');
    out.ascii(result.reason);
    out.ascii('"');
  }
  out.ascii('}');
  return out.done();
}

/**
 * Bytes the answer can take at most: a UTF-16 unit of a string is at most 6 bytes escaped
 * (`\u001f`, a lone surrogate), a number at most 24 characters, an instant 29 with its quotes
 * (years past 9999 take 6 digits and a sign), everything else 286 (counted: 512 leaves room). A
 * write past the end of a buffer is dropped without an error, so the bound must hold.
 */
function boundOf(result: ServeResult): number {
  let bound = 512 + 6 * (result.userId.length + result.modelVersion.length);
  for (let i = 0; i < result.items.length; i++) bound += 48 + 6 * result.items[i]!.itemId.length;
  return bound;
}

class Writer {
  readonly #buffer: Buffer;
  #at = 0;

  constructor(bound: number) {
    // Under 4 KB (a typical answer), a slice of Node's shared pool: no allocation of its own.
    this.#buffer = Buffer.allocUnsafe(bound);
  }

  /** Text known to be ASCII without anything JSON escapes (constants, numbers, instants). */
  ascii(text: string): void {
    const buffer = this.#buffer;
    let at = this.#at;
    for (let i = 0; i < text.length; i++) buffer[at++] = text.charCodeAt(i);
    this.#at = at;
  }

  /** A JSON string: printable ASCII written as it is, anything else as JSON.stringify writes it. */
  string(text: string): void {
    const buffer = this.#buffer;
    const start = this.#at;
    let at = start;
    buffer[at++] = 0x22;
    for (let i = 0; i < text.length; i++) {
      const unit = text.charCodeAt(i);
      if (unit < 0x20 || unit > 0x7e || unit === 0x22 || unit === 0x5c) {
        this.#at = start + buffer.write(JSON.stringify(text), start, 'utf8');
        return;
      }
      buffer[at++] = unit;
    }
    buffer[at++] = 0x22;
    this.#at = at;
  }

  done(): Buffer {
    return this.#buffer.subarray(0, this.#at);
  }
}

/** JSON's number: a finite number as written, anything else null (as the schema serializer). */
function jsonNumber(value: number): string {
  return Number.isFinite(value) ? `${value}` : 'null';
}

function isoOrNull(at: Date | null): string {
  return at === null ? 'null' : `"${at.toISOString()}"`;
}
