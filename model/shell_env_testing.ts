/**
 * Preloaded into every test module by `deno task test` (`--preload`): removes `INIT_CWD`, the
 * shell's folder that `deno task` passes on (it runs the tests in the repository root). The tools
 * read relative command-line paths from that folder (`model/usage.ts` `shellPath`), and the tests
 * give paths relative to the repository root: run from a subfolder, they would read the wrong
 * files. Subprocesses the tests start inherit the removal. Tests of `shellPath` set the variable
 * themselves. Not used by the library or the benchmarks.
 *
 * @module
 */

Deno.env.delete("INIT_CWD");
