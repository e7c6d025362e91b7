// Up to this many UTF-16 units a string is copied byte by byte while it is ASCII: a native
// Buffer#write costs ≈100 ns per call, and the hot writers (a set's 100 item ids, a serve's
// fields) write many short strings.
const INLINE_TEXT_MAX = 64;

/**
 * Writes `text` as UTF-8 at `offset` of `target`, which must have room for 3 bytes per UTF-16
 * unit there; returns the bytes written. The text was ASCII exactly when that equals its length.
 * Shared by the binary COPY encoder, the cache entries and their items' block.
 */
export function writeUtf8(target: Buffer, offset: number, text: string): number {
  const length = text.length;
  let written = 0;
  if (length <= INLINE_TEXT_MAX) {
    for (; written < length; written++) {
      const code = text.charCodeAt(written);
      if (code > 0x7f) break;
      target[offset + written] = code;
    }
  }
  // Not ASCII (from its first other character on), or long: the native UTF-8 encoder.
  if (written < length) written += target.write(written === 0 ? text : text.slice(written), offset + written, 'utf8');
  return written;
}
