import assert from "node:assert/strict";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { inTempDir } from "./fs_testing.ts";
import { isDocExampleModule } from "./doc_example_testing.ts";

const PRELOAD = fileURLToPath(new URL("./doc_example_testing.ts", import.meta.url));

Deno.test("isDocExampleModule: a JSDoc example's module, not a test file or module", () => {
  assert.equal(isDocExampleModule("file:///r/benchmarks/rng.ts#33-37.ts"), true);
  assert.equal(isDocExampleModule("file:///r/benchmarks/rng_test.ts"), false);
  assert.equal(isDocExampleModule("file:///r/benchmarks/rng.ts"), false);
  assert.equal(isDocExampleModule("file:///r/a#1.ts"), false);
  assert.equal(isDocExampleModule("file:///r/x#1-2.ts"), false, "no module before the #");
});

Deno.test("deno test --doc with the preload: a JSDoc example whose console.assert fails fails; a true one passes; a test's console.assert still only prints", () =>
  inTempDir(async (dir) => {
    const example = (cond: string) =>
      `/**\n * @example\n * \`\`\`ts\n * console.assert(${cond}, "two is two");\n * \`\`\`\n */\n` +
      `export const x = 1;\n`;
    await Deno.writeTextFile(join(dir, "good.ts"), example("2 === 2"));
    await Deno.writeTextFile(join(dir, "bad.ts"), example("2 === 3"));
    // A falsy value that is no boolean fails as well (console.assert's own rule).
    await Deno.writeTextFile(join(dir, "zero.ts"), example("0"));
    await Deno.writeTextFile(
      join(dir, "plain_test.ts"),
      `Deno.test("prints", () => console.assert(false, "only printed"));\n`,
    );
    const run = async (file: string) => {
      const out = await new Deno.Command(Deno.execPath(), {
        args: ["test", "--doc", "--no-check", `--preload=${PRELOAD}`, file],
        cwd: dir,
        env: { NO_COLOR: "1" },
      }).output();
      return {
        code: out.code,
        text: new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr),
      };
    };
    const good = await run("good.ts");
    assert.equal(good.code, 0, good.text);
    assert.match(good.text, /ok \| 1 passed \| 0 failed/);
    const bad = await run("bad.ts");
    assert.equal(bad.code, 1, bad.text);
    assert.match(bad.text, /console\.assert failed in file:\/\/.*bad\.ts#\d+-\d+\.ts: two is two/);
    const zero = await run("zero.ts");
    assert.equal(zero.code, 1, zero.text);
    const plain = await run("plain_test.ts");
    assert.equal(plain.code, 0, plain.text);
    assert.match(plain.text, /Assertion failed: only printed/);
  }));
