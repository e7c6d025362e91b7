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
    out.number(item.score);
    out.ascii('}');
  }
  out.ascii('],"source":"');
  out.ascii(result.source);
  out.ascii('","computedAt":');
  if (result.computedAt === null) out.ascii('null');
  else out.instant(result.computedAt);
  out.ascii(',"expiresAt":');
  if (result.expiresAt === null) out.ascii('null');
  else out.instant(result.expiresAt);
  out.ascii(',"stalenessMs":');
  if (result.stalenessMs === null) out.ascii('null');
  else out.number(Math.round(result.stalenessMs));
  out.ascii(result.behind ? ',"behind":true,"missedInteractions":' : ',"behind":false,"missedInteractions":');
  if (result.missedInteractions === null) out.ascii('null');
  else out.number(result.missedInteractions);
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

  /**
   * A number as JSON writes it (`${value}`, null when not finite). Integers below 10^15 and the
   * scores as stored (at most six significant digits, `storedScore`, between 10^-6 and 10^6) are
   * written digit by digit: `${value}` would put each one's text in V8's number-string cache, a
   * table in the old generation, which keeps every text alive through the next scavenges — 20 a
   * login, most of what the answer left in the old generation (README "Benchmarks").
   */
  number(value: number): void {
    const magnitude = Math.abs(value);
    if (Number.isInteger(value) && magnitude < 1e15) {
      if (value < 0) this.#buffer[this.#at++] = 0x2d;
      this.#digits(magnitude, 0);
      return;
    }
    if (magnitude >= 1e-6 && magnitude < 1e6) {
      // value = ± m / 10^decimals exactly as storedScore computes it: then the decimal m·10^-decimals,
      // trailing zeros dropped, is the shortest text that reads back as value — what `${value}`
      // writes (two decimals of at most 15 significant digits never read as the same double).
      const decimals = 5 - Math.floor(Math.log10(magnitude));
      const scale = POWERS_OF_TEN[decimals] ?? Number.NaN;
      const m = Math.round(magnitude * scale);
      if (m / scale === magnitude) {
        if (value < 0) this.#buffer[this.#at++] = 0x2d;
        const fraction = m % scale;
        this.#digits((m - fraction) / scale, 0);
        let width = decimals;
        let digits = fraction;
        while (width > 0 && digits % 10 === 0) {
          digits /= 10;
          width--;
        }
        if (width > 0) {
          this.#buffer[this.#at++] = 0x2e;
          this.#digits(digits, width);
        }
        return;
      }
    }
    this.ascii(jsonNumber(value));
  }

  /** A non-negative integer's decimal digits, left-padded with zeros to `width`. */
  #digits(integer: number, width: number): void {
    let length = 1;
    while (length < 16 && integer >= POWERS_OF_TEN[length]!) length++;
    if (length < width) length = width;
    const buffer = this.#buffer;
    const first = this.#at;
    let at = first + length - 1;
    let rest = integer;
    // Doubles down to 2^31, then small integers (the usual case from the start: a score's digits).
    for (; rest >= 0x80000000; at--) {
      const quotient = Math.floor(rest / 10);
      buffer[at] = 0x30 + (rest - quotient * 10);
      rest = quotient;
    }
    let small = rest | 0;
    for (; at >= first; at--) {
      const quotient = (small / 10) | 0;
      buffer[at] = 0x30 + (small - quotient * 10);
      small = quotient;
    }
    this.#at = first + length;
  }

  /** An instant as JSON writes a Date (`toISOString`), in quotes; years 0–9999 digit by digit. */
  instant(at: Date): void {
    const year = at.getUTCFullYear();
    if (!(year >= 0 && year <= 9999)) {
      this.ascii(`"${at.toISOString()}"`);
      return;
    }
    const buffer = this.#buffer;
    buffer[this.#at++] = 0x22;
    this.#digits(year, 4);
    buffer[this.#at++] = 0x2d;
    this.#digits(at.getUTCMonth() + 1, 2);
    buffer[this.#at++] = 0x2d;
    this.#digits(at.getUTCDate(), 2);
    buffer[this.#at++] = 0x54;
    this.#digits(at.getUTCHours(), 2);
    buffer[this.#at++] = 0x3a;
    this.#digits(at.getUTCMinutes(), 2);
    buffer[this.#at++] = 0x3a;
    this.#digits(at.getUTCSeconds(), 2);
    buffer[this.#at++] = 0x2e;
    this.#digits(at.getUTCMilliseconds(), 3);
    buffer[this.#at++] = 0x5a;
    buffer[this.#at++] = 0x22;
  }

  done(): Buffer {
    return this.#buffer.subarray(0, this.#at);
  }
}

const POWERS_OF_TEN = Array.from({ length: 17 }, (_, i) => 10 ** i);

/** JSON's number: a finite number as written, anything else null (as the schema serializer). */
function jsonNumber(value: number): string {
  return Number.isFinite(value) ? `${value}` : 'null';
}
