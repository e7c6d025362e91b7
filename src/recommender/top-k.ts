/**
 * The `k` best of `count` candidate indices, best first: higher `score[index]` wins, and equal
 * scores go to the lower index. Item indices follow item-id order, so "lower index" is "ties
 * broken by item id". A bounded heap keeps it O(count · log k): training calls it once per item
 * over up to every other item, serving once per user.
 */
export function topK(candidates: ArrayLike<number>, count: number, score: ArrayLike<number>, k: number): number[] {
  if (k <= 0 || count <= 0) return [];
  const better = (a: number, b: number): boolean => {
    const sa = score[a] as number;
    const sb = score[b] as number;
    return sa > sb || (sa === sb && a < b);
  };
  // Min-heap on "better": the root is the worst kept candidate, the first to be displaced.
  const heap: number[] = [];
  const siftDown = (start: number): void => {
    let at = start;
    for (;;) {
      const left = 2 * at + 1;
      const right = left + 1;
      let worst = at;
      if (left < heap.length && better(heap[worst] as number, heap[left] as number)) worst = left;
      if (right < heap.length && better(heap[worst] as number, heap[right] as number)) worst = right;
      if (worst === at) return;
      [heap[at], heap[worst]] = [heap[worst] as number, heap[at] as number];
      at = worst;
    }
  };
  for (let n = 0; n < count; n++) {
    const candidate = candidates[n] as number;
    if (heap.length < k) {
      heap.push(candidate);
      let at = heap.length - 1;
      while (at > 0) {
        const parent = (at - 1) >> 1;
        if (!better(heap[parent] as number, heap[at] as number)) break;
        [heap[at], heap[parent]] = [heap[parent] as number, heap[at] as number];
        at = parent;
      }
    } else if (better(candidate, heap[0] as number)) {
      heap[0] = candidate;
      siftDown(0);
    }
  }
  return heap.sort((a, b) => (better(a, b) ? -1 : 1));
}
