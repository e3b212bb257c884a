/**
 * Preloaded into every test module by `deno task test` (`--preload`), which also runs the JSDoc
 * examples (`--doc`): in an example's module (`<file>.ts#<first>-<last>.ts`), `console.assert`
 * throws, so that an example whose assertion fails fails its test. Deno's `console.assert` only
 * prints, and the examples assert with it (it needs no import in the example). Other modules,
 * tests and libraries keep the printing `console.assert`. Not used by the library or the
 * benchmarks.
 *
 * @module
 */

/** Whether a test module's URL is that of a JSDoc example (`deno test --doc`). */
export function isDocExampleModule(url: string): boolean {
  return /\.[cm]?[jt]sx?#\d+-\d+\.[cm]?[jt]sx?$/.test(url);
}

if (isDocExampleModule(Deno.mainModule)) {
  console.assert = (condition?: boolean, ...data: unknown[]) => {
    if (!condition) {
      throw new Error(
        `console.assert failed in ${Deno.mainModule}${data.length ? `: ${data.join(" ")}` : ""}`,
      );
    }
  };
}
