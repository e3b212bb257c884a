/**
 * Test helpers: a T5-layout SentencePiece `spiece.model` trained with `spm_train` on a few
 * sentences ({@link trainTinySpiece}), the reference ids of `spm_encode` ({@link spmEncode}), and
 * whether both tools are installed ({@link HAS_SPM}; tests that need them are ignored without,
 * as the other SentencePiece tests are). Used by model/spm_test.ts, model/pretrained_test.ts and
 * benchmarks/run_one_test.ts.
 *
 * @module
 */
import { join } from "node:path";
import { trainSentencePiece } from "./spm.ts";

/** Whether `spm_train` and `spm_encode` (Debian's `sentencepiece`) are installed. */
export const HAS_SPM: boolean = await Promise.all(
  ["spm_train", "spm_encode"].map((bin) =>
    new Deno.Command(bin, { args: ["--help"], stdout: "null", stderr: "null" }).output()
  ),
).then(() => true, () => false);

/** Why a test needing `spm_train` is ignored. */
export const NO_SPM = "spm_train/spm_encode not installed (apt-get install -y sentencepiece)";

/** The sentences {@link trainTinySpiece} trains on. */
export const TINY_CORPUS = [
  "the cat sat on the mat",
  "a dog ran in the park",
  "the movie was good",
  "it was a good day",
  "the cat and the dog",
];

/** A trained tiny vocabulary. */
export interface TinySpiece {
  /** The folder holding `spiece.model` and the converter's `tokenizer.json`. */
  readonly dir: string;
  /** Its `spiece.model`. */
  readonly spiece: string;
  /** The `tokenizer.json` that `trainSentencePiece` wrote (100 sentinels). */
  readonly tokenizerJson: string;
  /** SentencePiece pieces (without sentinels): 30 for {@link TINY_CORPUS}. */
  readonly pieces: number;
}

/**
 * Trains a T5-layout Unigram vocabulary on {@link TINY_CORPUS} (a few dozen pieces: the corpus
 * cannot give more) into `dir`, with `trainSentencePiece` (`<pad>`, `</s>`, `<unk>` at 0–2).
 *
 * @param dir the folder (made if absent)
 * @returns the files and the number of pieces
 */
export async function trainTinySpiece(dir: string): Promise<TinySpiece> {
  await Deno.mkdir(dir, { recursive: true });
  const corpus = join(dir, "corpus.txt");
  await Deno.writeTextFile(corpus, TINY_CORPUS.join("\n") + "\n");
  const tokenizerJson = await trainSentencePiece([corpus], { vocabSize: 4096, outDir: dir });
  await Deno.remove(corpus);
  const json = JSON.parse(await Deno.readTextFile(tokenizerJson));
  return {
    dir,
    spiece: join(dir, "spiece.model"),
    tokenizerJson,
    pieces: (json.model.vocab as unknown[]).length - 100,
  };
}

/**
 * The ids `spm_encode` gives `text` (one line) with `model`, without `</s>`.
 *
 * @param model a `.model` file
 * @param text one line of text
 * @returns the ids
 */
export async function spmEncode(model: string, text: string): Promise<number[]> {
  const child = new Deno.Command("spm_encode", {
    args: [`--model=${model}`, "--output_format=id"],
    stdin: "piped",
    stdout: "piped",
  }).spawn();
  const w = child.stdin.getWriter();
  await w.write(new TextEncoder().encode(text + "\n"));
  await w.close();
  const res = await child.output();
  return new TextDecoder().decode(res.stdout).trim().split(/\s+/).filter((s) => s !== "")
    .map(Number);
}
