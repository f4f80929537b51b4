/**
 * Rendezvous (highest-random-weight) hashing: every prober computes, for each route, a score per
 * live member and the highest score owns the route. All probers that see the same member list
 * agree on every owner without talking to each other, and when a member joins or leaves only
 * the routes it gains or held move (about 1/N of them).
 */
export function rendezvousOwner(key: string, members: readonly string[]): string | undefined {
  let best: string | undefined;
  let bestScore = -1;
  for (const m of members) {
    const score = hash32(`${m}\n${key}`);
    // Ties (rare with a 32-bit hash) go to the smaller id so the choice stays deterministic.
    if (score > bestScore || (score === bestScore && best !== undefined && m < best)) {
      best = m;
      bestScore = score;
    }
  }
  return best;
}

/** FNV-1a over UTF-16 code units, finished with murmur3's fmix32 for avalanche. Unsigned. */
export function hash32(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}
