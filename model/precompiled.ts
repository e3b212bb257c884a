/**
 * SentencePiece's `precompiled_charsmap` (the `Precompiled` normalizer of every T5
 * `tokenizer.json`), applied as the Rust `tokenizers` library applies it.
 *
 * The charsmap is `[u32 LE: trie bytes][trie: u32 LE units of a Darts double-array trie][pool]`:
 * the trie maps UTF-8 byte strings to offsets into the pool, where the NUL-terminated
 * replacement text starts. The Rust library walks the text by extended grapheme clusters: a
 * cluster shorter than 6 UTF-8 bytes whose bytes start with a key of the trie is replaced as a
 * whole by the replacement of the shortest such key; otherwise each character is replaced by
 * its own entry, or kept when it has none.
 *
 * `@huggingface/tokenizers` does not read the charsmap: it approximates it with NFKC plus a fixed
 * list of characters mapped to a space, which differs from it (and from the Rust library) on
 * U+200D ZERO WIDTH JOINER (mapped to a space, splitting emoji sequences and Indic conjuncts),
 * U+0344 and characters newer than the charsmap's Unicode version.
 *
 * @module
 */

/** A parsed `precompiled_charsmap`. */
export class PrecompiledCharsmap {
  readonly #units: Uint32Array;
  readonly #pool: Uint8Array;
  /** Replacement (or null: none) of single characters and short clusters seen so far. */
  readonly #cache = new Map<string, string | null>();
  /** Matches the ASCII characters the charsmap rewrites (set by the constructor). */
  readonly #asciiMapped: RegExp;
  static #segmenter: Intl.Segmenter | undefined;

  /**
   * @param bytes the charsmap's bytes (the base64-decoded `precompiled_charsmap`)
   * @param where what to name in errors (file and field)
   * @throws Error naming `where` when the trie length is missing, not a multiple of 4, or
   *   longer than the data, or the replacement pool is not UTF-8
   */
  constructor(bytes: Uint8Array, where: string) {
    if (bytes.byteLength < 4) {
      throw new Error(`${where}: precompiled_charsmap has ${bytes.byteLength} bytes (at least 4)`);
    }
    const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    const trieBytes = view.getUint32(0, true);
    if (trieBytes % 4 !== 0 || 4 + trieBytes > bytes.byteLength || trieBytes === 0) {
      throw new Error(
        `${where}: precompiled_charsmap declares a trie of ${trieBytes} bytes, but it must be ` +
          `a positive multiple of 4 within the ${bytes.byteLength - 4} bytes after the length`,
      );
    }
    this.#units = new Uint32Array(trieBytes / 4);
    for (let i = 0; i < this.#units.length; i++) this.#units[i] = view.getUint32(4 + 4 * i, true);
    this.#pool = bytes.slice(4 + trieBytes);
    try {
      new TextDecoder("utf-8", { fatal: true }).decode(this.#pool);
    } catch {
      throw new Error(`${where}: precompiled_charsmap's replacement strings are not UTF-8`);
    }
    let mapped = "";
    for (let c = 0; c < 128; c++) {
      if (this.#transform(String.fromCharCode(c)) !== null) {
        mapped += `\\x${c.toString(16).padStart(2, "0")}`;
      }
    }
    // CR starts the two-character cluster CR LF, which is looked up whole.
    this.#asciiMapped = new RegExp(`[\\r${mapped}]`);
  }

  /**
   * Parse a base64 `precompiled_charsmap` as `tokenizer.json` stores it.
   *
   * @throws Error naming `where` when it is not base64 or not a valid charsmap
   */
  static fromBase64(b64: string, where: string): PrecompiledCharsmap {
    let bin: string;
    try {
      bin = atob(b64);
    } catch {
      throw new Error(`${where}: precompiled_charsmap is not base64`);
    }
    return new PrecompiledCharsmap(Uint8Array.from(bin, (c) => c.charCodeAt(0)), where);
  }

  /** The pool offset of the shortest trie key that is a prefix of `key` (NUL ends the key). */
  #shortestPrefixValue(key: Uint8Array): number | undefined {
    const a = this.#units;
    const offset = (u: number) => (u >>> 10) << ((u & (1 << 9)) >>> 6);
    let pos = 0;
    let unit = a[0]!;
    pos ^= offset(unit);
    for (const c of key) {
      if (c === 0) return undefined;
      pos ^= c;
      unit = a[pos] ?? 0;
      // The label holds bit 31 for non-leaf units: no byte equals it.
      if ((unit & 0x800000ff) >>> 0 !== c) return undefined;
      pos ^= offset(unit);
      if ((unit >>> 8) & 1) return (a[pos] ?? 0) & 0x7fffffff;
    }
    return undefined;
  }

  /** The replacement of a chunk of text, or null when the trie has no key prefixing it. */
  #transform(chunk: string): string | null {
    const hit = this.#cache.get(chunk);
    if (hit !== undefined) return hit;
    const start = this.#shortestPrefixValue(new TextEncoder().encode(chunk));
    let out: string | null = null;
    if (start !== undefined && start <= this.#pool.length) {
      let end = start;
      while (end < this.#pool.length && this.#pool[end] !== 0) end++;
      out = new TextDecoder().decode(this.#pool.subarray(start, end));
    }
    if (this.#cache.size < 65536) this.#cache.set(chunk, out);
    return out;
  }

  /** One extended grapheme cluster, as the Rust `Precompiled` normalizer rewrites it. */
  #cluster(g: string): string {
    if (new TextEncoder().encode(g).byteLength < 6) {
      const whole = this.#transform(g);
      if (whole !== null) return whole;
    }
    let out = "";
    for (const c of g) out += this.#transform(c) ?? c;
    return out;
  }

  /** Normalize text as the Rust library's `Precompiled` normalizer does. */
  normalize(text: string): string {
    let out = "";
    // ASCII text needs no segmenter: every character is its own cluster but CR LF.
    if (/^[\0-\x7f]*$/.test(text)) {
      if (!this.#asciiMapped.test(text)) return text;
      for (let i = 0; i < text.length; i++) {
        const crlf = text[i] === "\r" && text[i + 1] === "\n";
        out += this.#cluster(crlf ? "\r\n" : text[i]!);
        if (crlf) i++;
      }
      return out;
    }
    const seg = PrecompiledCharsmap.#segmenter ??= new Intl.Segmenter("und", {
      granularity: "grapheme",
    });
    for (const { segment } of seg.segment(text)) out += this.#cluster(segment);
    return out;
  }
}
