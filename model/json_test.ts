import assert from "node:assert/strict";
import { jsonSyntaxHint, jsonSyntaxLocation, parseJsonFile } from "./json.ts";

/** The line, column and message of `text`'s syntax error (its offset is checked to match). */
function locate(text: string) {
  try {
    JSON.parse(text);
  } catch (e) {
    const { offset, ...at } = jsonSyntaxLocation(text, e);
    const before = text.slice(0, offset).split("\n");
    assert.deepEqual([before.length, before.at(-1)!.length + 1], [at.line, at.column]);
    return at;
  }
  throw new Error("the text parsed");
}

Deno.test("jsonSyntaxLocation() gives the line and column of every kind of mistake", () => {
  const profile = '{\n  "name": "ci",\n  "seeds": [0, 1,],\n  "steps": 10\n}\n';
  // V8 gives no position for these; the excerpt of the text is dropped.
  assert.deepEqual(locate(profile), { line: 3, column: 18, message: "Unexpected token ']'" });
  assert.deepEqual(locate('{\n  "lr": NaN\n}'), {
    line: 2,
    column: 9,
    message: "Unexpected token 'N'",
  });
  assert.deepEqual(locate('{\n  "ok": tru }'), {
    line: 2,
    column: 12,
    message: "Unexpected token ' '",
  });
  // V8's own position is used, without its "(line 1 column …)" of the whole text.
  assert.deepEqual(locate('{\n  "a": 1,\n}'), {
    line: 3,
    column: 1,
    message: "Expected double-quoted property name",
  });
  assert.deepEqual(locate('{\n  "a": 1\n'), {
    line: 3,
    column: 1,
    message: "Expected ',' or '}' after property value",
  });
  assert.deepEqual(locate("{}\nx"), {
    line: 2,
    column: 1,
    message: "Unexpected non-whitespace character after JSON",
  });
});

Deno.test("parseJsonFile() names file:line:column and ignores a byte-order mark", () => {
  assert.deepEqual(parseJsonFile('\ufeff{"a": [1]}', "p.json"), { a: [1] });
  assert.throws(
    () => parseJsonFile('{\n  "seeds": [0,]\n}', "profiles/x.json"),
    {
      message: "profiles/x.json:2:15: invalid JSON: Unexpected token ']' (JSON allows no " +
        "comments or trailing commas)",
    },
  );
  // A control character V8 quotes raw is escaped: the error stays one line, and a CR (a CRLF
  // file) does not send the terminal's cursor back over the file name.
  const crlf = '{\r\n  "seed": tru\r\n}\r\n';
  assert.throws(() => parseJsonFile(crlf, "p.json"), {
    message: "p.json:2:14: invalid JSON: Unexpected token '\\r'",
  });
  assert.throws(() => parseJsonFile('{\n  "seed": tru\n}', "p.json"), {
    message: "p.json:2:14: invalid JSON: Unexpected token '\\n'",
  });
  assert.throws(() => parseJsonFile("[fals\t]", "p.json"), {
    message: "p.json:1:6: invalid JSON: Unexpected token '\\t'",
  });
  assert.throws(() => parseJsonFile("[nul\u001b]", "p.json"), {
    message: "p.json:1:5: invalid JSON: Unexpected token '\\u001b'",
  });
  // C1 controls (DEL, NEL) and the line and paragraph separators are escaped too: a NEL or
  // U+2028 breaks the line in some terminals and editors, DEL is invisible.
  const escaped: Record<string, string> = {
    "\u007f": "\\u007f",
    "\u0085": "\\u0085",
    "\u2028": "\\u2028",
    "\u2029": "\\u2029",
  };
  for (const [c, shown] of Object.entries(escaped)) {
    assert.throws(() => parseJsonFile(`[nul${c}]`, "p.json"), {
      message: `p.json:1:5: invalid JSON: Unexpected token '${shown}'`,
    });
  }
  assert.throws(() => parseJsonFile("", "empty.json"), {
    message: "empty.json:1:1: invalid JSON: Unexpected end of JSON input",
  });
});

Deno.test("parseJsonFile() hints at a comment or a trailing comma, and at nothing else", () => {
  const hint = " (JSON allows no comments or trailing commas)";
  const cases: [string, string][] = [
    ['{\n  "a": 1,\n}', "p.json:3:1: invalid JSON: Expected double-quoted property name" + hint],
    ['{\n  "a": [1, 2 ,\n  ]\n}', "p.json:3:3: invalid JSON: Unexpected token ']'" + hint],
    [
      '{\n  // the seeds\n  "seeds": [0]\n}',
      "p.json:2:3: invalid JSON: Expected property name or '}'" + hint,
    ],
    [
      '{\n  "seeds": [0], /* x */\n  "a": 1\n}',
      "p.json:2:17: invalid JSON: Expected double-quoted property name" + hint,
    ],
    [
      '{\n  "a": 1 /\n}',
      "p.json:2:10: invalid JSON: Expected ',' or '}' after property value" + hint,
    ],
    // Not a comment or trailing comma: no hint.
    [
      '{\n  "a": 1\n  "b": 2\n}',
      "p.json:3:3: invalid JSON: Expected ',' or '}' after property value",
    ],
    ["[1, , 2]", "p.json:1:5: invalid JSON: Unexpected token ','"],
    ['{"a": }', "p.json:1:7: invalid JSON: Unexpected token '}'"],
  ];
  for (const [text, message] of cases) {
    assert.throws(() => parseJsonFile(text, "p.json"), { message }, text);
  }
  assert.equal(jsonSyntaxHint("[1,]", 3), hint);
  assert.equal(jsonSyntaxHint("[1]", 2), "");
  assert.equal(jsonSyntaxHint("", 0), "");
});
