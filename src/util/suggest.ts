// "Did you mean" hints for misspelt keys and names (state-dict keys, config keys, preset names). No imports: any
// layer may use it.

/** The candidate closest to `key` by edit distance, when it is close enough to be a likely typo. */
export function closest(key: string, candidates: Iterable<string>): string | undefined {
  let best: string | undefined;
  let bestD = Infinity;
  for (const c of candidates) {
    const d = levenshtein(key, c);
    if (d < bestD) [best, bestD] = [c, d];
  }
  return best !== undefined && bestD <= Math.max(2, Math.floor(key.length / 3)) ? best : undefined;
}

/** The key a misspelt `key` most likely meant: the shortest known key it abbreviates, else `closest`. */
export function suggest(key: string, known: readonly string[]): string | undefined {
  const extensions = known.filter((k) => k.startsWith(key)).sort((a, b) => a.length - b.length);
  return extensions[0] ?? closest(key, known);
}

/** How many items of a long list an error message shows before "… and N more". */
export const LIST_PREVIEW = 10;

/**
 * `a, b, c` for a short list; the first `limit` items and `… and N more` for a long one (the full list belongs in a
 * property of the error). `show` formats the items shown.
 */
export function previewList<T>(items: readonly T[], show: (item: T) => string = String, sep = ', ', limit = LIST_PREVIEW): string {
  const shown = items.slice(0, limit).map(show).join(sep);
  return items.length <= limit ? shown : `${shown}${sep}… and ${items.length - limit} more`;
}

function levenshtein(a: string, b: string): number {
  const prev = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    let diag = prev[0]!;
    prev[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const tmp = prev[j]!;
      prev[j] = Math.min(prev[j]! + 1, prev[j - 1]! + 1, diag + (a[i - 1] === b[j - 1] ? 0 : 1));
      diag = tmp;
    }
  }
  return prev[b.length]!;
}
