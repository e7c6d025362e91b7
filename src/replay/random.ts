/** Seeded randomness for the generator: a small PRNG and the distributions it draws from. */

export type Random = () => number;

function mix32(value: number): number {
  let h = value | 0;
  h = Math.imul(h ^ (h >>> 16), 0x21f0aaad);
  h = Math.imul(h ^ (h >>> 15), 0x735a2d97);
  return (h ^ (h >>> 15)) >>> 0;
}

function hashSeed(...parts: number[]): number {
  let h = 0x9e3779b9;
  for (const part of parts) h = mix32(h ^ mix32(part + 0x7f4a7c15));
  return h;
}

/** A seeded PRNG returning floats in [0, 1). */
export function createRandom(...seedParts: number[]): Random {
  const base = hashSeed(...seedParts);
  let a = mix32(base ^ 0x1b873593);
  let b = mix32(base ^ 0xcc9e2d51);
  let c = mix32(base ^ 0x85ebca6b);
  let d = 1;
  const next = (): number => {
    const t = (((a + b) | 0) + d) | 0;
    d = (d + 1) | 0;
    a = b ^ (b >>> 9);
    b = (c + (c << 3)) | 0;
    c = (c << 21) | (c >>> 11);
    c = (c + t) | 0;
    return (t >>> 0) / 4_294_967_296;
  };
  for (let i = 0; i < 12; i += 1) next();
  return next;
}

export function uniform(random: Random, low: number, high: number): number {
  return low + (high - low) * random();
}

export function normal(random: Random, mean: number, sd: number): number {
  const u = 1 - random();
  const v = random();
  return mean + sd * Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * v);
}

export function poisson(random: Random, mean: number, cap: number): number {
  // Knuth's method: the means here are small.
  const limit = Math.exp(-mean);
  let k = 0;
  let product = random();
  while (product > limit && k < cap) {
    k += 1;
    product *= random();
  }
  return k;
}

export function exponential(random: Random, mean: number): number {
  return -mean * Math.log(1 - random());
}

export function pick<T>(random: Random, weighted: readonly (readonly [T, number])[]): T {
  const total = weighted.reduce((sum, [, weight]) => sum + weight, 0);
  let target = random() * total;
  for (const [value, weight] of weighted) {
    target -= weight;
    if (target < 0) return value;
  }
  return (weighted[weighted.length - 1] as readonly [T, number])[0];
}

/** Index into a cumulative weight table, drawn in proportion to the weights. */
export function drawCumulative(random: Random, cumulative: Float64Array): number {
  const target = random() * (cumulative[cumulative.length - 1] as number);
  let low = 0;
  let high = cumulative.length - 1;
  while (low < high) {
    const mid = (low + high) >>> 1;
    if ((cumulative[mid] as number) > target) high = mid;
    else low = mid + 1;
  }
  return low;
}

export function cumulativeOf(weights: readonly number[]): Float64Array {
  const cumulative = new Float64Array(weights.length);
  let sum = 0;
  weights.forEach((weight, index) => {
    sum += weight;
    cumulative[index] = sum;
  });
  return cumulative;
}

export function shuffled(random: Random, length: number): number[] {
  const order = Array.from({ length }, (_, index) => index);
  for (let i = length - 1; i > 0; i -= 1) {
    const j = Math.floor(random() * (i + 1));
    [order[i], order[j]] = [order[j] as number, order[i] as number];
  }
  return order;
}

// ---------------------------------------------------------------------------------------------
// Options

