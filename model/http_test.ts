import assert from "node:assert/strict";
import { join } from "node:path";
import { diskFullError, withOpenedFiles } from "./fs_testing.ts";
import {
  ConnectionError,
  errorChain,
  fetchResumable,
  getWithin,
  HtmlPageError,
  type HttpGet,
  HttpStatusError,
  isConnectFailure,
  MAX_CAUSE_DEPTH,
  parseContentRange,
  partSourcePath,
  readPartSource,
  RedirectLimitError,
  TransferError,
} from "./http.ts";

/**
 * A fetch answering each request with the next of `answers`, recording the `range` headers (and
 * the `if-range` headers, given `ifRanges`).
 */
function scripted(
  answers: (() => Response)[],
  ranges: (string | null)[],
  ifRanges?: (string | null)[],
): typeof fetch {
  return ((_url: string | URL | Request, init?: RequestInit) => {
    const headers = new Headers(init?.headers);
    ranges.push(headers.get("range"));
    ifRanges?.push(headers.get("if-range"));
    const next = answers.shift();
    if (next === undefined) throw new Error("no more answers");
    return Promise.resolve(next());
  }) as typeof fetch;
}

const noSleep = () => Promise.resolve();
const bytes = (s: string) => new TextEncoder().encode(s);

/** Runs `fn` with a fresh temporary folder and its `f.part` path; the folder is removed after. */
async function inTempDir(fn: (part: string, dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir();
  try {
    await fn(join(dir, "f.part"), dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

/** The names in `dir`, sorted. */
function namesIn(dir: string): string[] {
  return [...Deno.readDirSync(dir)].map((e) => e.name).sort();
}

/** A `sleep` that records the waits asked for and returns at once. */
function recordingSleep(): { waits: number[]; sleep: (ms: number) => Promise<void> } {
  const waits: number[] = [];
  return { waits, sleep: (ms) => (waits.push(ms), Promise.resolve()) };
}

Deno.test("parseContentRange: start and total of 206 and 416, malformed", () => {
  assert.deepEqual(parseContentRange("bytes 5-9/10"), { first: 5, total: 10 });
  assert.deepEqual(parseContentRange(" bytes */10 "), { first: undefined, total: 10 });
  assert.deepEqual(parseContentRange("bytes 5-9/*"), { first: 5, total: undefined });
  const bads = [null, "", "items 5-9/10", "bytes 5-/10", "bytes 5-9", "bytes */x"];
  // The whole header, not a part of it.
  bads.push("bytes 5-9/10x", "xbytes 5-9/10", "bytes 5-9/10, bytes 0-1/10");
  for (const bad of bads) {
    assert.equal(parseContentRange(bad), undefined, String(bad));
  }
});

Deno.test("fetchResumable: a wrong resume offset restarts from 0; a stated size is checked", async () => {
  await inTempDir(async (part) => {
    // The part holds 3 bytes; the server resumes at 2: the part is dropped, the next attempt
    // fetches all of it.
    await Deno.writeFile(part, bytes("abc"));
    const ranges: (string | null)[] = [];
    const got = await fetchResumable("http://x.invalid/f", part, {
      checkLength: true,
      sleep: noSleep,
      fetch: scripted([
        () => new Response("cdef", { status: 206, headers: { "content-range": "bytes 2-5/6" } }),
        () => new Response("abcdef", { headers: { "content-length": "6" } }),
      ], ranges),
    });
    assert.deepEqual(ranges, ["bytes=3-", null]);
    assert.deepEqual(got, { bytes: 6, resumedAt: 0, attempts: 2 });
    assert.equal(await Deno.readTextFile(part), "abcdef");
    // A 206 whose Content-Range states a total the bytes do not reach: retried, resuming.
    await Deno.writeFile(part, bytes("ab"));
    ranges.length = 0;
    const resumed = await fetchResumable("http://x.invalid/f", part, {
      checkLength: true,
      sleep: noSleep,
      fetch: scripted([
        () => new Response("cd", { status: 206, headers: { "content-range": "bytes 2-5/6" } }),
        () => new Response("ef", { status: 206, headers: { "content-range": "bytes 4-5/6" } }),
      ], ranges),
    });
    assert.deepEqual(ranges, ["bytes=2-", "bytes=4-"]);
    assert.deepEqual(resumed, { bytes: 6, resumedAt: 4, attempts: 2 });
    assert.equal(await Deno.readTextFile(part), "abcdef");
  });
});

Deno.test("fetchResumable: a 206 without a Content-Range is not appended; a 200 to a resume restarts at 0; 3 retries by default", async () => {
  await inTempDir(async (part, dir) => {
    const url = "http://x.invalid/f";
    // A 206 whose start is not stated (no or a malformed Content-Range): nothing says where its
    // bytes go, so the part is dropped and the next attempt fetches it all.
    for (const headers of [{}, { "content-range": "bytes 3-5" }] as Record<string, string>[]) {
      await Deno.writeFile(part, bytes("abc"));
      const ranges: (string | null)[] = [];
      const got = await fetchResumable(url, part, {
        sleep: noSleep,
        fetch: scripted([
          () => new Response("DEF", { status: 206, headers }),
          () => new Response("ABCDEF", { headers: { "content-length": "6" } }),
        ], ranges),
      });
      assert.deepEqual(ranges, ["bytes=3-", null], JSON.stringify(headers));
      assert.deepEqual(got, { bytes: 6, resumedAt: 0, attempts: 2 }, JSON.stringify(headers));
      assert.equal(await Deno.readTextFile(part), "ABCDEF");
    }
    // A server that ignores Range answers 200: the part is written again from byte 0, and the
    // progress is told the whole file's size (not the part's plus the body's).
    await Deno.writeFile(part, bytes("abc"));
    const totals: (number | undefined)[] = [];
    const notes: (string | undefined)[] = [];
    const whole = await fetchResumable(url, part, {
      sleep: noSleep,
      fetch: scripted([() => new Response("ABCDEF", { headers: { "content-length": "6" } })], []),
      progress: (total) => {
        totals.push(total);
        return { update() {}, finish: (note) => void notes.push(note) };
      },
    });
    assert.deepEqual(whole, { bytes: 6, resumedAt: 0, attempts: 1 });
    assert.deepEqual(totals, [6]);
    assert.deepEqual(notes, [undefined], "not 'resumed at 3 B'");
    assert.equal(await Deno.readTextFile(part), "ABCDEF");
    // A lasting 503: the first attempt and 3 retries (the default), after 1, 2 and 4 s.
    await Deno.remove(part);
    const { waits, sleep } = recordingSleep();
    let calls = 0;
    await assert.rejects(
      fetchResumable(url, part, {
        sleep,
        fetch: () => (calls++, Promise.resolve(new Response("busy", { status: 503 }))),
      }),
      HttpStatusError,
    );
    assert.equal(calls, 4);
    assert.deepEqual(waits, [1000, 2000, 4000]);
    assert.deepEqual(namesIn(dir), []);
  });
});

Deno.test("fetchResumable recordSource: a part dropped after a failed check takes its record with it", async () => {
  await inTempDir(async (part, dir) => {
    const url = "http://x.invalid/f";
    const whole = () => new Response("ABCDEF", { headers: { etag: '"v1"' } });
    await assert.rejects(
      fetchResumable(url, part, {
        recordSource: true,
        sleep: noSleep,
        fetch: scripted([whole], []),
        verify: () => Promise.reject(new Error("bad digest")),
      }),
      /^Error: bad digest$/,
    );
    assert.deepEqual(namesIn(dir), [], "neither the part nor its record");
    // Longer than the size expected: dropped, with its record.
    await assert.rejects(
      fetchResumable(url, part, {
        recordSource: true,
        bytes: 4,
        retries: 0,
        sleep: noSleep,
        fetch: scripted([whole], []),
      }),
      /size 6 B, expected 4 B \(another version of the file\?; deleted\)/,
    );
    assert.deepEqual(namesIn(dir), []);
  });
});

Deno.test("fetchResumable: too many bytes from byte 0 is final; after a resume it restarts from 0", async () => {
  await inTempDir(async (part, dir) => {
    const url = "http://x.invalid/f";
    const ranges: (string | null)[] = [];
    const whole = () => new Response("ABCDEF");
    // From byte 0, longer than expected: one request, not four (the default three retries).
    await assert.rejects(
      fetchResumable(url, part, {
        bytes: 4,
        sleep: noSleep,
        fetch: scripted([whole, whole, whole, whole], ranges),
      }),
      /^Error: http:\/\/x\.invalid\/f: size 6 B, expected 4 B \(another version of the file\?; deleted\)$/,
    );
    assert.deepEqual(ranges, [null]);
    assert.deepEqual(namesIn(dir), []);
    // A resume that ends up too long: the part is dropped and the retry starts from byte 0.
    await Deno.writeTextFile(part, "ABC");
    ranges.length = 0;
    const tooLong = () =>
      new Response("DEFG", { status: 206, headers: { "content-range": "bytes 3-6/7" } });
    assert.deepEqual(
      await fetchResumable(url, part, {
        bytes: 6,
        sleep: noSleep,
        fetch: scripted([tooLong, whole], ranges),
      }),
      { bytes: 6, resumedAt: 0, attempts: 2 },
    );
    assert.deepEqual(ranges, ["bytes=3-", null]);
    assert.equal(await Deno.readTextFile(part), "ABCDEF");
  });
});

Deno.test("fetchResumable: a complete file shorter than expected is final from byte 0 (part and record dropped); a cut one resumes", async () => {
  await inTempDir(async (part, dir) => {
    // A real server: its 200 states Content-Length 3, and all 3 bytes come, from byte 0.
    let requests = 0;
    const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, () => {
      requests++;
      return new Response("abc", { headers: { etag: '"v2"' } });
    });
    const url = `http://127.0.0.1:${server.addr.port}/f`;
    const { waits, sleep } = recordingSleep();
    const lines: string[] = [];
    try {
      await assert.rejects(
        fetchResumable(url, part, {
          name: "cola.zip",
          bytes: 6,
          recordSource: true,
          sleep,
          log: (l) => lines.push(l),
        }),
        /^Error: cola\.zip \(http:\/\/127\.0\.0\.1:\d+\/f\): the server's file is 3 B, expected 6 B \(another version of the file\?; deleted\)$/,
      );
    } finally {
      await server.shutdown();
    }
    assert.equal(requests, 1, "one request: fetching it again would give the same bytes");
    assert.deepEqual(waits, []);
    assert.equal(lines.length, 0, lines.join("\n"));
    assert.deepEqual(namesIn(dir), [], "neither the part nor its record is kept to resume");
    // A resume whose 206 states a shorter total and brings the part to it: the part may have
    // been joined wrongly, so it is dropped and fetched from byte 0, which is then final.
    await Deno.writeTextFile(part, "ab");
    const ranges: (string | null)[] = [];
    await assert.rejects(
      fetchResumable("http://x.invalid/f", part, {
        bytes: 6,
        sleep,
        log: (l) => lines.push(l),
        fetch: scripted([
          () => new Response("c", { status: 206, headers: { "content-range": "bytes 2-2/3" } }),
          () => new Response("abc", { headers: { "content-length": "3" } }),
          () => new Response("abc", { headers: { "content-length": "3" } }),
        ], ranges),
      }),
      /^Error: http:\/\/x\.invalid\/f: the server's file is 3 B, expected 6 B \(another/,
    );
    assert.deepEqual(ranges, ["bytes=2-", null]);
    assert.deepEqual(namesIn(dir), []);
    // A longer file, all of it served from byte 0: "size" is the error (more bytes than
    // expected), final too, the part dropped.
    await assert.rejects(
      fetchResumable("http://x.invalid/f", part, {
        bytes: 6,
        sleep,
        fetch: scripted(
          [() => new Response("abcdefgh", { headers: { "content-length": "8" } })],
          [],
        ),
      }),
      /^Error: http:\/\/x\.invalid\/f: size 8 B, expected 6 B \(another version of the file\?; deleted\)$/,
    );
    assert.deepEqual(namesIn(dir), []);
    // An encoded body's Content-Length is not the file's size: a short one is retried as before.
    lines.length = 0;
    await assert.rejects(
      fetchResumable("http://x.invalid/f", part, {
        bytes: 6,
        retries: 1,
        sleep: noSleep,
        log: (l) => lines.push(l),
        fetch: scripted([
          () =>
            new Response("abc", {
              headers: { "content-length": "3", "content-encoding": "gzip" },
            }),
          () => new Response("d", { status: 206, headers: { "content-range": "bytes 3-3/6" } }),
        ], []),
      }),
      (e: unknown) =>
        e instanceof TransferError && e.message === "GET http://x.invalid/f: got 4 of 6 bytes",
    );
    assert.deepEqual(lines, [
      "http://x.invalid/f: GET http://x.invalid/f: got 3 of 6 bytes; retrying in 1 s",
    ]);
    await Deno.remove(part);
    // A 206 of an unknown total ("bytes 2-2/*") states no file size: its Content-Length is the
    // range's, so a part short of `bytes` is a cut transfer, resumed (not another version).
    await Deno.writeTextFile(part, "ab");
    lines.length = 0;
    const resumed = await fetchResumable("http://x.invalid/f", part, {
      bytes: 6,
      retries: 1,
      sleep: noSleep,
      log: (l) => lines.push(l),
      fetch: scripted([
        () =>
          new Response("c", {
            status: 206,
            headers: { "content-range": "bytes 2-2/*", "content-length": "1" },
          }),
        () =>
          new Response("def", {
            status: 206,
            headers: { "content-range": "bytes 3-5/6", "content-length": "3" },
          }),
      ], ranges),
    });
    assert.equal(resumed.bytes, 6);
    assert.equal(await Deno.readTextFile(part), "abcdef");
    assert.deepEqual(lines, [
      "http://x.invalid/f: GET http://x.invalid/f: got 3 of 6 bytes; retrying in 1 s",
    ]);
    await Deno.remove(part);
  });
  await inTempDir(async (part) => {
    // A transfer cut mid-body (Content-Length 6, 3 bytes, then the connection closes): kept
    // and resumed, as before.
    const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    const port = (l.addr as Deno.NetAddr).port;
    const heads: string[] = [];
    const served = (async () => {
      let n = 0;
      for await (const c of l) {
        const buf = new Uint8Array(4096);
        const got = await c.read(buf);
        heads.push(new TextDecoder().decode(buf.subarray(0, got ?? 0)).toLowerCase());
        await c.write(
          bytes(
            n++ === 0
              ? "HTTP/1.1 200 OK\r\ncontent-length: 6\r\nconnection: close\r\n\r\nabc"
              : "HTTP/1.1 206 Partial Content\r\ncontent-range: bytes 3-5/6\r\ncontent-length: 3\r\nconnection: close\r\n\r\ndef",
          ),
        );
        c.close();
        if (n === 2) break;
      }
    })();
    const { waits, sleep } = recordingSleep();
    try {
      const got = await fetchResumable(`http://127.0.0.1:${port}/f`, part, { bytes: 6, sleep });
      assert.deepEqual(got, { bytes: 6, resumedAt: 3, attempts: 2 });
      assert.deepEqual(waits, [1000]);
      assert.ok(heads[1]?.includes("range: bytes=3-"), String(heads[1]));
      assert.equal(await Deno.readTextFile(part), "abcdef");
      await served;
    } finally {
      try {
        l.close();
      } catch { /* closed when the server loop ended */ }
    }
  });
});

Deno.test("fetchResumable: verify's error is final and drops the part; 404 is not retried", async () => {
  await inTempDir(async (part) => {
    const { waits, sleep } = recordingSleep();
    const ranges: (string | null)[] = [];
    await assert.rejects(
      fetchResumable("http://x.invalid/f", part, {
        sleep,
        fetch: scripted([() => new Response("<html>")], ranges),
        verify: () => Promise.reject(new Error("not a checkpoint")),
      }),
      /^Error: not a checkpoint$/,
    );
    assert.deepEqual(ranges, [null], "one request");
    await assert.rejects(Deno.stat(part), Deno.errors.NotFound);
    await assert.rejects(
      fetchResumable("http://x.invalid/f", part, {
        sleep,
        fetch: scripted([() => new Response("no", { status: 404 })], ranges),
      }),
      (e: unknown) => e instanceof HttpStatusError && e.status === 404,
    );
    // A connection that fails every time: a TransferError after the retries.
    await assert.rejects(
      fetchResumable("http://x.invalid/f", part, {
        sleep,
        retries: 2,
        fetch: () => Promise.reject(new TypeError("connection refused")),
      }),
      (e: unknown) =>
        e instanceof TransferError && e.message === "GET http://x.invalid/f: connection refused",
    );
    assert.deepEqual(waits, [1000, 2000]);
  });
});

/** Writes the record of `part`'s source ({@link partSourcePath}): `url`, and `etag` if given. */
async function writeRecord(part: string, url: string, etag?: string): Promise<void> {
  await Deno.writeTextFile(partSourcePath(part), JSON.stringify(etag ? { url, etag } : { url }));
}

Deno.test("fetchResumable ifRange: a 206 of another version (If-Range ignored, or no ETag recorded) restarts the part", async () => {
  await inTempDir(async (part, dir) => {
    const url = "http://x.invalid/f";
    const whole = (etag: string) => () =>
      new Response("ABCDEF", { headers: { "content-length": "6", etag } });
    const tail = (etag: string | null) => () =>
      new Response("DEF", {
        status: 206,
        headers: { "content-range": "bytes 3-5/6", ...(etag === null ? {} : { etag }) },
      });
    /** Runs the transfer with `answers`, recording the Range and If-Range headers sent. */
    const run = async (answers: (() => Response)[]) => {
      const ranges: (string | null)[] = [];
      const ifRanges: (string | null)[] = [];
      const lines: string[] = [];
      const got = await fetchResumable(url, part, {
        checkLength: true,
        ifRange: true,
        sleep: noSleep,
        log: (l) => lines.push(l),
        fetch: scripted(answers, ranges, ifRanges),
      });
      return { got, ranges, ifRanges, lines };
    };
    // The part's bytes are of version "v1"; the server ignores If-Range and sends v2's tail.
    // Appended, the file would be "abcDEF": v1's start joined to v2's end, of the stated size.
    // A recorded ETag is compared with the 206's by recordSource's check (which ifRange implies);
    // with none recorded, ifRange's own check restarts on the 206's strong ETag.
    const cases = [
      {
        what: "If-Range ignored",
        recorded: '"v1"' as string | undefined,
        answer: '"v2"',
        line: `${url}: the 3 B part is of another version (ETag "v1", now "v2"); restarting from 0`,
      },
      {
        what: "a weak ETag of another version",
        recorded: '"v1"',
        answer: 'W/"v2"',
        line:
          `${url}: the 3 B part is of another version (ETag "v1", now W/"v2"); restarting from 0`,
      },
      {
        what: "no ETag recorded",
        recorded: undefined,
        answer: '"v2"',
        line: `${url}: the 3 B part is of another version (ETag none, now "v2"); restarting from 0`,
      },
      {
        what: "the 206 has no ETag (a server that ignores If-Range and keeps no validators)",
        recorded: '"v1"',
        answer: null,
        line: `${url}: the 3 B part is of another version (ETag "v1", now none); restarting from 0`,
      },
    ];
    for (const c of cases) {
      await Deno.writeFile(part, bytes("abc"));
      await writeRecord(part, url, c.recorded);
      const r = await run([tail(c.answer), whole('"v2"')]);
      assert.deepEqual(r.ranges, ["bytes=3-", null], c.what);
      assert.deepEqual(r.ifRanges, [c.recorded ?? null, null], c.what);
      assert.deepEqual(r.got, { bytes: 6, resumedAt: 0, attempts: 1 }, c.what);
      assert.equal(await Deno.readTextFile(part), "ABCDEF", c.what);
      assert.deepEqual(r.lines, [c.line], c.what);
      // Complete: the record is removed, and no `.etag` was ever written.
      assert.deepEqual(namesIn(dir), ["f.part"], c.what);
    }
    // The same version (the strong ETag sent as If-Range); or a weak ETag recorded (not sent: it
    // cannot serve If-Range) and the same on the 206: resumed.
    const same = [
      { recorded: '"v1"', answer: '"v1"', sent: '"v1"' },
      { recorded: 'W/"v1"', answer: 'W/"v1"', sent: null },
    ];
    for (const c of same) {
      const what = JSON.stringify(c);
      await Deno.writeFile(part, bytes("ABC"));
      await writeRecord(part, url, c.recorded);
      const r = await run([tail(c.answer)]);
      assert.deepEqual(r.ranges, ["bytes=3-"], what);
      assert.deepEqual(r.ifRanges, [c.sent], what);
      assert.deepEqual(r.got, { bytes: 6, resumedAt: 3, attempts: 1 }, what);
      assert.equal(await Deno.readTextFile(part), "ABCDEF", what);
      assert.deepEqual(r.lines, [], what);
    }
    // A part beside the `.etag` an earlier version of this code kept, with no record: nothing
    // ties it to this URL; fetched whole at once (the `.etag` unread), and the `.etag` removed.
    await Deno.writeFile(part, bytes("abc"));
    await Deno.writeTextFile(`${part}.etag`, '"v1"');
    const legacy = await run([whole('"v1"')]);
    assert.deepEqual(legacy.ranges, [null]);
    assert.deepEqual(legacy.ifRanges, [null]);
    assert.deepEqual(legacy.lines, [
      `${url}: the 3 B part has no record of its source (${
        partSourcePath(part)
      }), not ${url}; restarting from 0`,
    ]);
    assert.equal(await Deno.readTextFile(part), "ABCDEF");
    assert.deepEqual(namesIn(dir), ["f.part"], "no `.etag` left behind");
  });
});

Deno.test("fetchResumable ifRange: a complete part settled by 416 is accepted only as the same version", async () => {
  await inTempDir(async (part, dir) => {
    const url = "http://x.invalid/f";
    // The server's answer to `Range: bytes=6-`: nothing left, with or without an ETag of its own.
    const unsatisfied = (etag?: string) => () =>
      new Response(null, {
        status: 416,
        headers: { "content-range": "bytes */6", ...(etag ? { etag } : {}) },
      });
    const whole = () =>
      new Response("ABCDEF", { headers: { "content-length": "6", etag: '"v2"' } });
    const otherVersion = (why: string) =>
      `${url}: the complete 6 B part may be of another version of the file (${why}); restarting`;
    const cases = [
      // The part is of v1, the file is now v2 of the same size, and the server ignored If-Range:
      // before, the stale part was accepted as the complete file. (The record's ETag is the one
      // compared: recordSource's check, which ifRange implies.)
      {
        what: "another version",
        recorded: '"v1"',
        answers: [unsatisfied('"v2"'), whole],
        line: `${url}: the 6 B part is of another version (ETag "v1", now "v2"); restarting from 0`,
      },
      {
        what: "a weak ETag of another version",
        recorded: '"v1"',
        answers: [unsatisfied('W/"v2"'), whole],
        line:
          `${url}: the 6 B part is of another version (ETag "v1", now W/"v2"); restarting from 0`,
      },
      {
        what: "no ETag recorded",
        recorded: undefined,
        answers: [unsatisfied('"v2"'), whole],
        line: `${url}: the 6 B part is of another version (ETag none, now "v2"); restarting from 0`,
      },
      {
        what: "no ETag either side",
        recorded: undefined,
        answers: [unsatisfied(), whole],
        line: otherVersion("no strong ETag recorded"),
      },
      {
        what: "the same weak ETag either side (no If-Range sent)",
        recorded: 'W/"v1"',
        answers: [unsatisfied('W/"v1"'), whole],
        line: otherVersion("no strong ETag recorded"),
      },
    ];
    for (const c of cases) {
      await Deno.writeFile(part, bytes("abcdef"));
      await writeRecord(part, url, c.recorded);
      const ranges: (string | null)[] = [];
      const lines: string[] = [];
      const got = await fetchResumable(url, part, {
        checkLength: true,
        ifRange: true,
        sleep: noSleep,
        log: (l) => lines.push(l),
        fetch: scripted(c.answers, ranges),
      });
      assert.deepEqual(ranges, ["bytes=6-", null], c.what);
      assert.deepEqual(got, { bytes: 6, resumedAt: 0, attempts: 1 }, c.what);
      assert.equal(await Deno.readTextFile(part), "ABCDEF", c.what);
      assert.deepEqual(lines, [c.line], c.what);
      // Complete: the record is removed, and no `.etag` was ever written.
      assert.deepEqual(namesIn(dir), ["f.part"], c.what);
    }
    // The same version: the 416 names the ETag sent, or none (a server honouring If-Range would
    // have answered a changed file 200). Accepted with no other request.
    for (const etag of ['"v1"', undefined]) {
      await Deno.writeFile(part, bytes("abcdef"));
      await writeRecord(part, url, '"v1"');
      const ranges: (string | null)[] = [];
      const got = await fetchResumable(url, part, {
        checkLength: true,
        ifRange: true,
        sleep: noSleep,
        fetch: scripted([unsatisfied(etag)], ranges),
      });
      assert.deepEqual(ranges, ["bytes=6-"], String(etag));
      assert.deepEqual(got, { bytes: 6, resumedAt: 6, attempts: 1 }, String(etag));
      assert.equal(await Deno.readTextFile(part), "abcdef");
    }
    // Without ifRange (the GLUE downloader, which checks digests) the size alone settles it.
    await Deno.writeFile(part, bytes("abcdef"));
    const got = await fetchResumable("http://x.invalid/f", part, {
      sleep: noSleep,
      fetch: scripted([unsatisfied('"v2"')], []),
    });
    assert.deepEqual(got, { bytes: 6, resumedAt: 6, attempts: 1 });
  });
});

Deno.test("fetchResumable recordSource: a part is resumed only from its own URL and version", async () => {
  await inTempDir(async (part) => {
    const record = partSourcePath(part);
    const A = "http://a.invalid/f";
    const B = "http://b.invalid/f";
    const whole = (headers: Record<string, string> = {}) => () =>
      new Response("ABCDEF", { headers: { "content-length": "6", ...headers } });
    const tail = (headers: Record<string, string> = {}) => () =>
      new Response("DEF", {
        status: 206,
        headers: { "content-range": "bytes 3-5/6", ...headers },
      });
    const run = async (url: string, answers: (() => Response)[], ifRange: (string | null)[]) => {
      const ranges: (string | null)[] = [];
      const lines: string[] = [];
      const got = await fetchResumable(url, part, {
        recordSource: true,
        retries: 0,
        sleep: noSleep,
        log: (l) => lines.push(l),
        fetch: scripted(answers, ranges, ifRange),
      });
      return { got, ranges, lines };
    };
    // A transfer from A cut after 3 bytes leaves the part and its record: A's URL and validators,
    // written before the first byte.
    const cut = new ReadableStream<Uint8Array>({
      start(c) {
        c.enqueue(bytes("abc"));
      },
      pull(c) {
        c.error(new Error("cut"));
      },
    });
    const v1 = { etag: '"v1"', "last-modified": "Mon, 01 Jun 2026 00:00:00 GMT" };
    await assert.rejects(
      run(A, [() => new Response(cut, { headers: { "content-length": "6", ...v1 } })], []),
      TransferError,
    );
    assert.equal(await Deno.readTextFile(part), "abc");
    const recordedV1 = { url: A, etag: '"v1"', lastModified: v1["last-modified"] };
    assert.deepEqual(await readPartSource(part), recordedV1);
    // The next attempt asks B (another mirror): A's bytes are not resumed from B.
    const sent: (string | null)[] = [];
    const fromB = await run(B, [whole()], sent);
    assert.deepEqual(fromB.ranges, [null]);
    assert.deepEqual(fromB.got, { bytes: 6, resumedAt: 0, attempts: 1 });
    assert.equal(await Deno.readTextFile(part), "ABCDEF");
    assert.deepEqual(fromB.lines, [
      `${B}: the 3 B part came from ${A}, not ${B}; restarting from 0`,
    ]);
    await assert.rejects(Deno.stat(record), Deno.errors.NotFound, "complete: no record left");
    // A part with no record (an earlier version of this code): not resumed either.
    await Deno.writeFile(part, bytes("abc"));
    const bare = await run(A, [whole()], []);
    assert.deepEqual(bare.ranges, [null]);
    assert.deepEqual(bare.lines, [
      `${A}: the 3 B part has no record of its source (${record}), not ${A}; restarting from 0`,
    ]);
    // Its own URL, and the 206 of the same version (the same strong ETag, whether or not it
    // sends the Last-Modified too): resumed, the recorded strong ETag sent as If-Range.
    const sameVersion: Record<string, string>[] = [v1, { etag: v1.etag }];
    for (const headers of sameVersion) {
      await Deno.writeFile(part, bytes("ABC"));
      await Deno.writeTextFile(record, JSON.stringify(recordedV1));
      const ifRange: (string | null)[] = [];
      const same = await run(A, [tail(headers)], ifRange);
      assert.deepEqual(same.ranges, ["bytes=3-"], JSON.stringify(headers));
      assert.deepEqual(ifRange, ['"v1"']);
      assert.deepEqual(same.got, { bytes: 6, resumedAt: 3, attempts: 1 });
      assert.equal(await Deno.readTextFile(part), "ABCDEF");
      assert.deepEqual(same.lines, []);
    }
    // Its own URL, but the 206 (If-Range ignored) or the 416 of a complete part names another
    // ETag or Last-Modified: the file changed; fetched whole (appended, "abcDEF" would mix two
    // versions).
    const changed = [
      { what: "ETag", answer: tail({ etag: '"v2"' }), line: `ETag "v1", now "v2"` },
      {
        what: "Last-Modified",
        answer: tail({ etag: v1.etag, "last-modified": "Tue, 02 Jun 2026 00:00:00 GMT" }),
        line: `Last-Modified ${v1["last-modified"]}, now Tue, 02 Jun 2026 00:00:00 GMT`,
      },
      // A validator the record has and the 206 lacks: nothing proves the bytes the same.
      { what: "no validator", answer: tail(), line: `ETag "v1", now none` },
      {
        what: "no ETag",
        answer: tail({ "last-modified": v1["last-modified"] }),
        line: `ETag "v1", now none`,
      },
      {
        what: "416",
        answer: () =>
          new Response(null, {
            status: 416,
            headers: { "content-range": "bytes */3", etag: '"v2"' },
          }),
        line: `ETag "v1", now "v2"`,
      },
    ];
    for (const c of changed) {
      await Deno.writeFile(part, bytes("abc"));
      await Deno.writeTextFile(record, JSON.stringify(recordedV1));
      const r = await run(A, [c.answer, whole({ etag: '"v2"' })], []);
      assert.deepEqual(r.ranges, ["bytes=3-", null], c.what);
      assert.deepEqual(r.got, { bytes: 6, resumedAt: 0, attempts: 1 }, c.what);
      assert.equal(await Deno.readTextFile(part), "ABCDEF", c.what);
      assert.deepEqual(r.lines, [
        `${A}: the 3 B part is of another version (${c.line}); restarting from 0`,
      ]);
    }
    // The 416 of a complete part of the same version: accepted, nothing fetched again.
    await Deno.writeFile(part, bytes("abc"));
    await Deno.writeTextFile(record, JSON.stringify(recordedV1));
    const done = await run(A, [
      () => new Response(null, { status: 416, headers: { "content-range": "bytes */3", ...v1 } }),
    ], []);
    assert.deepEqual(done.got, { bytes: 3, resumedAt: 3, attempts: 1 });
    assert.deepEqual(done.lines, []);
    // An unreadable record is no record.
    await Deno.writeTextFile(record, "{not json");
    assert.equal(await readPartSource(part), undefined);
    await Deno.writeTextFile(record, JSON.stringify({ etag: '"v1"' }));
    assert.equal(await readPartSource(part), undefined);
  });
});

Deno.test("fetchResumable recordSource: a validator on one side only restarts the part, unless a matching strong ETag or a 416 to If-Range vouches for it", async () => {
  await inTempDir(async (part) => {
    const url = "http://x.invalid/f";
    const LM = "Mon, 01 Jun 2026 00:00:00 GMT";
    const whole = () => new Response("ABCDEF", { headers: { "content-length": "6" } });
    const tail = (headers: Record<string, string>) => () =>
      new Response("DEF", { status: 206, headers: { "content-range": "bytes 3-5/6", ...headers } });
    const unsatisfied = (headers: Record<string, string>) => () =>
      new Response(null, { status: 416, headers: { "content-range": "bytes */6", ...headers } });
    const restart = (why: string) =>
      `${url}: the ${why.startsWith("416") ? 6 : 3} B part is of another version (${
        why.replace(/^416 /, "")
      }); restarting from 0`;
    const cases: {
      what: string;
      /** The record's validators (`etag`, `lastModified`); its URL is `url`. */
      recorded: Record<string, string>;
      answer: () => Response;
      /** The If-Range sent with the resume (null: none). */
      sent: string | null;
      /** The log line of a restart; undefined: the part is resumed (or accepted) as it is. */
      line?: string;
    }[] = [
      // Restarted: a validator dropped or appeared, with nothing else proving the version.
      {
        what: "ETag dropped, Last-Modified the same",
        recorded: { etag: '"v1"', lastModified: LM },
        answer: tail({ "last-modified": LM }),
        sent: '"v1"',
        line: restart(`ETag "v1", now none`),
      },
      {
        what: "ETag appeared",
        recorded: { lastModified: LM },
        answer: tail({ etag: '"v2"', "last-modified": LM }),
        sent: null,
        line: restart(`ETag none, now "v2"`),
      },
      {
        what: "Last-Modified dropped, no ETag",
        recorded: { lastModified: LM },
        answer: tail({}),
        sent: null,
        line: restart(`Last-Modified ${LM}, now none`),
      },
      {
        what: "Last-Modified appeared, the same weak ETag (which proves no bytes)",
        recorded: { etag: 'W/"v1"' },
        answer: tail({ etag: 'W/"v1"', "last-modified": LM }),
        sent: null,
        line: restart(`Last-Modified none, now ${LM}`),
      },
      {
        what: "a 416 without the Last-Modified recorded, no If-Range sent",
        recorded: { lastModified: LM },
        answer: unsatisfied({}),
        sent: null,
        line: restart(`416 Last-Modified ${LM}, now none`),
      },
      {
        what: "a 416 with an ETag the record lacks",
        recorded: { lastModified: LM },
        answer: unsatisfied({ etag: '"v2"', "last-modified": LM }),
        sent: null,
        line: restart(`416 ETag none, now "v2"`),
      },
      {
        what: "an empty ETag recorded, a strong one now",
        recorded: { etag: '""' },
        answer: tail({ etag: '"v2"' }),
        sent: null,
        line: restart(`ETag none, now "v2"`),
      },
      // Resumed: the same strong ETag either side proves the version whatever Last-Modified does.
      {
        what: "Last-Modified dropped, the same strong ETag",
        recorded: { etag: '"v1"', lastModified: LM },
        answer: tail({ etag: '"v1"' }),
        sent: '"v1"',
      },
      {
        what: "Last-Modified appeared, the same strong ETag",
        recorded: { etag: '"v1"' },
        answer: tail({ etag: '"v1"', "last-modified": LM }),
        sent: '"v1"',
      },
      // A 416 need carry no validators; to the If-Range of the recorded strong ETag it confirms
      // the version (a server honouring If-Range answers a changed file 200).
      {
        what: "a 416 without validators to the If-Range sent",
        recorded: { etag: '"v1"', lastModified: LM },
        answer: unsatisfied({}),
        sent: '"v1"',
      },
      // No validator either side: nothing to compare, resumed on the URL alone.
      { what: "no validators", recorded: {}, answer: tail({}), sent: null },
      // An empty ETag is none: never sent as If-Range, and none on the 206 is no change.
      { what: "an empty ETag recorded", recorded: { etag: "" }, answer: tail({}), sent: null },
      { what: 'an ETag "" recorded', recorded: { etag: '""' }, answer: tail({}), sent: null },
    ];
    for (const c of cases) {
      const is416 = c.what.startsWith("a 416");
      await Deno.writeFile(part, bytes(is416 ? "ABCDEF" : "ABC"));
      await Deno.writeTextFile(partSourcePath(part), JSON.stringify({ url, ...c.recorded }));
      const ranges: (string | null)[] = [];
      const ifRanges: (string | null)[] = [];
      const lines: string[] = [];
      const got = await fetchResumable(url, part, {
        recordSource: true,
        retries: 0,
        sleep: noSleep,
        log: (l) => lines.push(l),
        fetch: scripted([c.answer, whole], ranges, ifRanges),
      });
      const from = is416 ? "bytes=6-" : "bytes=3-";
      assert.equal(await Deno.readTextFile(part), "ABCDEF", c.what);
      assert.equal(ifRanges[0], c.sent, c.what);
      if (c.line === undefined) {
        assert.deepEqual(ranges, [from], c.what);
        assert.deepEqual(lines, [], c.what);
        assert.deepEqual(got, { bytes: 6, resumedAt: is416 ? 6 : 3, attempts: 1 }, c.what);
      } else {
        assert.deepEqual(ranges, [from, null], c.what);
        assert.deepEqual(ifRanges, [c.sent, null], c.what);
        assert.deepEqual(lines, [c.line], c.what);
        assert.deepEqual(got, { bytes: 6, resumedAt: 0, attempts: 1 }, c.what);
      }
    }
  });
});

Deno.test("fetchResumable noRetry: a refused connection is final at once; a broken body is retried", async () => {
  await inTempDir(async (part, dir) => {
    const { waits, sleep } = recordingSleep();
    const seen: unknown[] = [];
    const noRetry = (e: unknown) => (seen.push(e), e instanceof ConnectionError);
    let calls = 0;
    await assert.rejects(
      fetchResumable("http://x.invalid/f", part, {
        sleep,
        noRetry,
        fetch: () => (calls++, Promise.reject(new TypeError("dns error"))),
      }),
      (e: unknown) =>
        e instanceof ConnectionError && e.message === "GET http://x.invalid/f: dns error",
    );
    assert.equal(calls, 1, "one attempt");
    assert.deepEqual(waits, [], "no wait");
    // A body that breaks after a response is a plain TransferError: retried, resuming.
    const broken = () =>
      new Response(
        new ReadableStream<Uint8Array>({
          start(c) {
            c.enqueue(bytes("abc"));
          },
          pull(c) { // the read after "abc"
            c.error(new TypeError("connection reset"));
          },
        }),
      );
    const ranges: (string | null)[] = [];
    const got = await fetchResumable("http://x.invalid/f", part, {
      sleep,
      noRetry,
      fetch: scripted([
        broken,
        () => new Response("def", { status: 206, headers: { "content-range": "bytes 3-5/6" } }),
      ], ranges),
    });
    assert.deepEqual(ranges, [null, "bytes=3-"]);
    assert.deepEqual(got, { bytes: 6, resumedAt: 3, attempts: 2 });
    assert.deepEqual(waits, [1000]);
    assert.ok(seen.at(-1) instanceof TransferError && !(seen.at(-1) instanceof ConnectionError));
    // The idle timeout (no response) is not a ConnectionError either.
    seen.length = 0;
    await assert.rejects(
      fetchResumable("http://x.invalid/g", join(dir, "g.part"), {
        sleep,
        noRetry,
        retries: 0,
        idleMs: 10,
        fetch: (_u, init) =>
          new Promise<Response>((_, reject) =>
            init?.signal?.addEventListener("abort", () => reject(new DOMException("aborted")))
          ),
      }),
      /no response within 0\.01 s/,
    );
    assert.ok(seen[0] instanceof TransferError && !(seen[0] instanceof ConnectionError));
  });
});

Deno.test("fetchResumable: a redirect loop (a real server's) is final at once, said as such; no retry", async () => {
  const server = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen() {} },
    (req) => new Response(null, { status: 302, headers: { location: new URL(req.url).pathname } }),
  );
  try {
    await inTempDir(async (part) => {
      const { waits, sleep } = recordingSleep();
      const url = `http://127.0.0.1:${server.addr.port}/loop/f`;
      await assert.rejects(
        fetchResumable(url, part, { sleep }),
        (e: unknown) =>
          e instanceof RedirectLimitError &&
          /^GET http:\/\/127\.0\.0\.1:\d+\/loop\/f: .*redirects.* \(a redirect loop\?\)$/i
            .test(e.message),
      );
      // Before, it waited 1 + 2 + 4 s through three retries of the same loop.
      assert.deepEqual(waits, []);
    });
  } finally {
    await server.shutdown();
  }
});

Deno.test("fetchResumable: an HTML page where a file was asked for is final at once, said as such, nothing kept", async () => {
  await inTempDir(async (part) => {
    const { waits, sleep } = recordingSleep();
    let calls = 0;
    let cancelled = 0;
    const page = () => (calls++,
      new Response("<html><body>Sign in</body></html>", {
        headers: { "content-type": "text/html; charset=utf-8" },
      }));
    // A page whose body stays open until cancelled: the refusal lets go of it.
    const openPage = () => (calls++,
      new Response(
        new ReadableStream<Uint8Array>({
          start: (c) => c.enqueue(new TextEncoder().encode("<html><body>Sign in")),
          cancel: () => void cancelled++,
        }),
        { headers: { "content-type": "text/html; charset=utf-8" } },
      ));
    await assert.rejects(
      fetchResumable("http://x.invalid/glue/RTE.zip", part, {
        sleep,
        fetch: scripted([openPage], []),
      }),
      (e: unknown) =>
        e instanceof HtmlPageError &&
        e.message ===
          "GET http://x.invalid/glue/RTE.zip: the server answered with an HTML page " +
            "(Content-Type: text/html; charset=utf-8), not the file: an error or login page, or " +
            "a mirror's index; check the URL and the endpoint",
    );
    assert.equal(calls, 1, "not retried");
    assert.equal(cancelled, 1, "the page's body is cancelled, not left open");
    assert.deepEqual(waits, []);
    assert.equal(await Deno.stat(part).then(() => true, () => false), false, "no part kept");
    // A page asked for as a page is a file like any other.
    const got = await fetchResumable("http://x.invalid/index.html", part, {
      sleep,
      fetch: scripted([page], []),
    });
    assert.equal(got.bytes, "<html><body>Sign in</body></html>".length);
  });
});

Deno.test("errorChain: an error and its Error causes, bounded and cycle-safe; isConnectFailure reads them all", () => {
  const root = new Error("Connection refused (os error 111)");
  const mid = new Error("tcp connect error", { cause: root });
  const top = new TypeError("fetch failed", { cause: mid });
  assert.deepEqual(errorChain(top), [top, mid, root]);
  assert.deepEqual(errorChain("fetch failed"), [], "no Error: no chain");
  // A cause that is no Error ends the chain.
  const withString = new Error("a", { cause: "b" });
  assert.deepEqual(errorChain(withString), [withString]);
  // A cycle ends where it comes back.
  const x = new Error("x");
  const y = new Error("y", { cause: x });
  x.cause = y;
  assert.deepEqual(errorChain(x), [x, y]);
  // A long chain stops at MAX_CAUSE_DEPTH errors.
  let deep = new Error("e0");
  for (let i = 1; i < 20; i++) deep = new Error(`e${i}`, { cause: deep });
  assert.deepEqual(
    errorChain(deep).map((e) => e.message),
    Array.from({ length: MAX_CAUSE_DEPTH }, (_, i) => `e${19 - i}`),
  );
  // The reason may be the top's message or any cause's, within the bound.
  assert.equal(isConnectFailure(top), true);
  assert.equal(isConnectFailure(new TypeError("dns error: failed to lookup address")), true);
  assert.equal(
    isConnectFailure(new TypeError("fetch failed", { cause: new Error("reset") })),
    false,
  );
  assert.equal(isConnectFailure("connection refused"), false, "a string is no fetch rejection");
  assert.equal(isConnectFailure(x), false);
});

Deno.test("ConnectionError: only a connection that could not be made; a server that closed it unanswered is retried", async () => {
  const dir = await Deno.makeTempDir();
  const { waits, sleep } = recordingSleep();
  const noRetry = (e: unknown) => e instanceof ConnectionError;
  // A server that reads the first request and closes the connection without an answer (a
  // restart, an overloaded balancer), then answers the next one: reached, so not offline.
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (l.addr as Deno.NetAddr).port;
  const served = (async () => {
    let n = 0;
    for await (const c of l) {
      await c.read(new Uint8Array(4096));
      if (n++ > 0) {
        await c.write(
          bytes("HTTP/1.1 200 OK\r\ncontent-length: 3\r\nconnection: close\r\n\r\nabc"),
        );
      }
      c.close();
      if (n === 2) break; // leaving the loop closes the listener: the port is free again
    }
  })();
  try {
    const got = await fetchResumable(`http://127.0.0.1:${port}/f`, join(dir, "f.part"), {
      sleep,
      noRetry,
    });
    assert.deepEqual(got, { bytes: 3, resumedAt: 0, attempts: 2 });
    assert.deepEqual(waits, [1000], "retried once, after 1 s");
    await served;
    // A port nothing listens on: a ConnectionError, at once, whose message gives the reason
    // (Deno's own message is a bare "fetch failed"; the reason is in its cause).
    waits.length = 0;
    await assert.rejects(
      fetchResumable(`http://127.0.0.1:${port}/f`, join(dir, "g.part"), { sleep, noRetry }),
      (e: unknown) => {
        assert.ok(e instanceof ConnectionError, String(e));
        assert.match(e.message, /^GET http:\/\/127\.0\.0\.1:\d+\/f: fetch failed \(.*refused/i);
        return true;
      },
    );
    assert.deepEqual(waits, []);
  } finally {
    try {
      l.close();
    } catch { /* closed when the server loop ended */ }
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("fetchResumable: a local file that cannot be written fails at once, naming it; no retry", async () => {
  await inTempDir(async (part, dir) => {
    let requests = 0;
    let cancelled = 0;
    // /f: a whole small file; /slow: 3 bytes, then a body that stays open until cancelled.
    const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, (req) => {
      requests++;
      if (!req.url.endsWith("/slow")) return new Response("abcdef");
      // Ended by the server after 2 s if the client never drops it, so a regression fails the
      // assertion below instead of hanging the server's shutdown.
      let timer: ReturnType<typeof setTimeout> | undefined;
      return new Response(
        new ReadableStream<Uint8Array>({
          start(c) {
            c.enqueue(bytes("abc"));
            timer = setTimeout(() => c.close(), 2000);
          },
          cancel() {
            clearTimeout(timer);
            cancelled++;
          },
        }),
      );
    });
    const url = `http://127.0.0.1:${server.addr.port}/f`;
    const slow = `http://127.0.0.1:${server.addr.port}/slow`;
    const { waits, sleep } = recordingSleep();
    const lines: string[] = [];
    try {
      // A full disk: every write to the part fails (Deno.open's handles, spied on).
      await withOpenedFiles((file, path) => {
        if (path === part) file.write = () => Promise.reject(diskFullError());
        return file;
      }, () =>
        assert.rejects(
          fetchResumable(slow, part, { sleep, log: (l) => lines.push(l) }),
          (e: unknown) => {
            assert.ok(e instanceof Error && !(e instanceof TransferError), String(e));
            assert.equal(
              e.message,
              `${part}: writing at 0 B (GET ${slow}) failed: No space left on device (os error 28)`,
            );
            assert.equal((e as { code?: string }).code, "ENOSPC");
            assert.equal((e.cause as Error).message, "No space left on device (os error 28)");
            return true;
          },
        ));
      assert.equal(requests, 1, "one attempt");
      assert.deepEqual(waits, [], "no wait");
      assert.deepEqual(lines, [], "no retry line");
      // The open body was dropped with its connection (else the server's shutdown would wait).
      for (let i = 0; i < 100 && cancelled === 0; i++) await new Promise((r) => setTimeout(r, 5));
      assert.equal(cancelled, 1, "the response body is cancelled");
      // A part whose folder is a file (the OS's own error, ENOTDIR): the same, at once.
      const blocker = join(dir, "blocker");
      await Deno.writeTextFile(blocker, "");
      const below = join(blocker, "f.part");
      await assert.rejects(fetchResumable(url, below, { sleep }), (e: unknown) => {
        assert.ok(e instanceof Deno.errors.NotADirectory, String(e));
        assert.ok(e.message.startsWith(`${below}: opening the part file (GET ${url}) failed: `));
        return true;
      });
      assert.equal(requests, 2, "one attempt");
      assert.deepEqual(waits, []);
      // Once the disk takes the bytes, the same download goes through.
      assert.deepEqual(await fetchResumable(url, part, { sleep }), {
        bytes: 6,
        resumedAt: 0,
        attempts: 1,
      });
    } finally {
      await server.shutdown();
    }
  });
});

Deno.test("fetchResumable: the retry line of a body cut off names the URL", async () => {
  await inTempDir(async (part) => {
    const { waits, sleep } = recordingSleep();
    const lines: string[] = [];
    const cut = () =>
      new Response(
        new ReadableStream<Uint8Array>({
          start(c) {
            c.enqueue(bytes("abc"));
          },
          pull(c) {
            c.error(new TypeError("error reading a body from connection"));
          },
        }),
      );
    const ranges: (string | null)[] = [];
    const got = await fetchResumable("http://x.invalid/f", part, {
      name: "rte.zip",
      sleep,
      log: (l) => lines.push(l),
      fetch: scripted([
        cut,
        () => new Response("def", { status: 206, headers: { "content-range": "bytes 3-5/6" } }),
      ], ranges),
    });
    assert.deepEqual(got, { bytes: 6, resumedAt: 3, attempts: 2 });
    assert.deepEqual(waits, [1000]);
    assert.deepEqual(lines, [
      "rte.zip: GET http://x.invalid/f: error reading a body from connection; retrying in 1 s",
    ]);
  });
});

Deno.test("getWithin(): a fetch failure's message says the URL once (Deno's causes repeat it)", async () => {
  const url = "https://dl.example/glue/RTE.zip";
  const cause = new Error(
    `error sending request for url (${url}): client error (Connect): dns error`,
  );
  const get: HttpGet = () => Promise.reject(new TypeError("fetch failed", { cause }));
  await assert.rejects(
    getWithin(get, url, {}, new AbortController(), 1000),
    (e: Error) => {
      assert.equal(e.message, `GET ${url}: fetch failed (client error (Connect): dns error)`);
      return true;
    },
  );
});
