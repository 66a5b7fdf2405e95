/** Cuts items into consecutive batches whose summed size stays under limit (a lone oversize item goes alone). */
export function* splitBySize<T>(items: readonly T[], sizeOf: (item: T) => number, limit: number): Generator<T[]> {
  let batch: T[] = [];
  let size = 0;
  for (const item of items) {
    const len = sizeOf(item);
    if (batch.length > 0 && size + len > limit) {
      yield batch;
      batch = [];
      size = 0;
    }
    batch.push(item);
    size += len;
  }
  if (batch.length) yield batch;
}
