/**
 * Test helpers for `precompiled.ts`: build a small `precompiled_charsmap`.
 *
 * @module
 */

/**
 * A `precompiled_charsmap` holding `map` (UTF-8 key → replacement): a Darts double-array trie
 * over the keys' bytes (a node at p with base b has unit (p ^ b) << 10 | leaf << 8 | label; its
 * child for byte c sits at b ^ c, its value unit at b with bit 31 set) and the NUL-terminated
 * replacements.
 */
export function buildCharsmap(map: Record<string, string>): Uint8Array {
  const enc = new TextEncoder();
  const pool: number[] = [];
  interface Node {
    children: Map<number, Node>;
    value?: number;
  }
  const root: Node = { children: new Map() };
  for (const [key, rep] of Object.entries(map)) {
    let n = root;
    for (const b of enc.encode(key)) {
      let c = n.children.get(b);
      if (!c) n.children.set(b, c = { children: new Map() });
      n = c;
    }
    n.value = pool.length;
    pool.push(...enc.encode(rep), 0);
  }
  const units: number[] = [];
  const used = new Set<number>([0]);
  const queue: [Node, number, number][] = [[root, 0, 0]];
  while (queue.length > 0) {
    const [node, pos, label] = queue.shift()!;
    const labels = [...node.children.keys()];
    let base = 1;
    while (
      (node.value !== undefined && used.has(base)) || labels.some((c) => used.has(base ^ c))
    ) base++;
    units[pos] = (((pos ^ base) << 10) | (node.value !== undefined ? 1 << 8 : 0) | label) >>> 0;
    if (node.value !== undefined) {
      used.add(base);
      units[base] = (node.value | 0x80000000) >>> 0;
    }
    for (const c of labels) {
      used.add(base ^ c);
      queue.push([node.children.get(c)!, base ^ c, c]);
    }
  }
  // Whole blocks of 256 units, as Darts writes them: a lookup of any byte stays in the array.
  const n = Math.ceil((Math.max(...used) + 1) / 256) * 256;
  const out = new Uint8Array(4 + 4 * n + pool.length);
  const view = new DataView(out.buffer);
  view.setUint32(0, 4 * n, true);
  for (let i = 0; i < n; i++) view.setUint32(4 + 4 * i, units[i] ?? 0, true);
  out.set(pool, 4 + 4 * n);
  return out;
}

/** A small charsmap with the kinds of rules SentencePiece's nmt_nfkc map has. */
export const SMALL_MAP: Record<string, string> = {
  "\ufb01": "fi", // ligature expands
  "\u00a0": " ", // no-break space
  "\u3000": " ", // ideographic space
  "e\u0301": "\u00e9", // two-character key: composes
  "q": "k", // a prefix of the cluster q + U+0301
  "\u2126": "\u03a9", // ohm sign → omega
  "\u0001": "", // control character removed
};
