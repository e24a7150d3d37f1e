import assert from "node:assert/strict";
import { startServer, startUnloadableServer } from "../src/test_server.ts";
import { CASES } from "./cases.ts";
import type { CaseResult } from "./runner.ts";
import { probeTools } from "./runner.ts";
import { startNonconformingServer } from "./testdata/nonconforming_server.ts";

const MAIN = new URL("./main.ts", import.meta.url).pathname;
// The suite's many large images run against the fast random-weight fixture, not the default model.
const FIXTURE_ARGS = [
  ...["--model", new URL("../fixtures/models/sd-turbo-tiny", import.meta.url).pathname],
  ...["--served-model-name", "denoise/sd-turbo-tiny"],
];
const tools = await probeTools();

/** Runs the suite as a user would: `deno run conformance/main.ts …`. */
async function runSuite(
  args: string[],
): Promise<{ code: number; stdout: string; results: CaseResult[] }> {
  const report = await Deno.makeTempFile({ suffix: ".json" });
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "--allow-all", MAIN, ...args, "--report", report],
    stdout: "piped",
    stderr: "piped",
  }).output();
  const results = JSON.parse(await Deno.readTextFile(report)).results;
  await Deno.remove(report);
  return { code: out.code, stdout: new TextDecoder().decode(out.stdout), results };
}

/** The edit cases that need a model that can edit. */
const EDITING = CASES.filter((c) => c.needsEdit).map((c) => c.id);

const ids = (results: CaseResult[], status: CaseResult["status"]) =>
  results.filter((r) => r.status === status).map((r) => r.id).sort();

Deno.test("the suite passes against our own server, started as a user starts it", async () => {
  const server = await startServer([...FIXTURE_ARGS, "--device", "cpu"]);
  try {
    const { code, stdout, results } = await runSuite(["--base-url", server.url]);
    assert.equal(code, 0, stdout);
    assert.deepEqual(ids(results, "fail"), []);
    // sd-turbo-tiny has no VAE encoder: the edit cases that need one are skipped (see below).
    const skipped = [
      "error-503-engine-not-ready",
      "images-curl-lora",
      "chat-curl-lora",
      ...EDITING,
    ];
    if (!tools.python) skipped.push("images-python-cat", "images-python-negative-prompt");
    if (!tools.shell) {
      skipped.push("chat-curl", "images-curl-dragon", "images-multiple", "images-troubleshooting");
    }
    assert.deepEqual(ids(results, "skip"), skipped.sort());
    assert.match(stdout, /\| case \| source \| expected \| got \| result \|/);
    assert.match(stdout, /images-curl-lora .*skipped: needs --lora-path/);
  } finally {
    await server.stop();
  }
});

Deno.test("the suite fails against a non-conforming server on exactly the faulty cases", async () => {
  const bad = await startNonconformingServer();
  try {
    const { code, results } = await runSuite(["--base-url", bad.url]);
    assert.equal(code, 1);
    const expected = [
      "error-422-missing-prompt",
      "error-422-n-out-of-range",
      "error-400-size-format",
      "images-openai-sdk",
      "images-size-honoured",
      "images-seed-reproducible",
      "chat-extra-body",
      "chat-openai-sdk",
      ...(tools.shell ? ["images-curl-dragon", "images-multiple", "chat-curl"] : []),
      ...EDITING.filter((id) => tools.shell || id !== "edit-curl-mask"),
      "edit-error-strength",
      "edit-error-missing-image",
      ...(tools.python ? ["images-python-cat", "images-python-negative-prompt"] : []),
    ];
    assert.deepEqual(ids(results, "fail"), expected.sort());
    assert.ok(ids(results, "pass").includes("error-422-wrong-type"));
    assert.ok(ids(results, "pass").includes("error-400-model-mismatch"));
  } finally {
    await bad.shutdown();
  }
});

Deno.test("the edit cases pass against the embedded model, which has a VAE encoder", async () => {
  const server = await startServer(["--device", "cpu"]);
  try {
    const { code, stdout, results } = await runSuite([
      "--base-url",
      server.url,
      "--only",
      "^edit-",
    ]);
    assert.equal(code, 0, stdout);
    const all = CASES.filter((c) => c.id.startsWith("edit-")).map((c) => c.id);
    const shellOnly = tools.shell ? [] : ["edit-curl-mask"];
    assert.deepEqual(ids(results, "pass"), all.filter((id) => !shellOnly.includes(id)).sort());
  } finally {
    await server.stop();
  }
});

Deno.test("--expect-unready runs the 503 case against a server without a ready engine", async () => {
  const server = await startUnloadableServer();
  try {
    const { code, results } = await runSuite(["--base-url", server.url, "--expect-unready"]);
    assert.equal(code, 0);
    assert.deepEqual(ids(results, "pass"), ["error-503-engine-not-ready"]);
  } finally {
    await server.stop();
  }
});

Deno.test("--only filters cases and --report FILE.xml writes JUnit", async () => {
  const bad = await startNonconformingServer();
  const xml = await Deno.makeTempFile({ suffix: ".xml" });
  try {
    const out = await new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "--allow-all",
        MAIN,
        "--base-url",
        bad.url,
        "--only",
        "^error-422",
        "--report",
        xml,
      ],
      stdout: "piped",
    }).output();
    assert.equal(out.code, 1);
    const report = await Deno.readTextFile(xml);
    assert.match(
      report,
      /<testsuite name="denoise-conformance" tests="3" failures="2" skipped="0">/,
    );
    assert.match(
      report,
      /<testcase classname="[^"]+" name="error-422-missing-prompt"><failure message=/,
    );
  } finally {
    await bad.shutdown();
    await Deno.remove(xml);
  }
});

Deno.test("with --lora-path the LoRA examples pass against a server with --lora-root, and fail without it", async () => {
  const loras = new URL("../fixtures/loras", import.meta.url).pathname;
  const args = ["--only", "lora", "--lora-path", `${loras}/sd-turbo-tiny/peft`];
  const server = await startServer([...FIXTURE_ARGS, "--device", "cpu", "--lora-root", loras]);
  try {
    const { code, results } = await runSuite(["--base-url", server.url, ...args]);
    assert.equal(code, 0, JSON.stringify(results));
    if (tools.shell) assert.deepEqual(ids(results, "pass"), ["chat-curl-lora", "images-curl-lora"]);
  } finally {
    await server.stop();
  }
  const closed = await startServer([...FIXTURE_ARGS, "--device", "cpu"]);
  try {
    const { code, results } = await runSuite(["--base-url", closed.url, ...args]);
    assert.equal(code, tools.shell ? 1 : 0);
    if (tools.shell) assert.deepEqual(ids(results, "fail"), ["chat-curl-lora", "images-curl-lora"]);
  } finally {
    await closed.stop();
  }
});

Deno.test("deno task fuzz: 1,000 spec-derived, mutated and malformed-framing requests, no 5xx, no undocumented status, every error in the documented shape with a request id", async () => {
  const { fuzz } = await import("./fuzz.ts");
  const { startServer } = await import("../src/test_server.ts");
  const server = await startServer(["--device", "cpu"]);
  try {
    const report = await fuzz(server.url, { requests: 1000, concurrency: 4, seed: 7 });
    assert.equal(report.requests, 1000);
    assert.deepEqual(report.violations, []);
    assert.equal(report.undocumented, 0);
    assert.ok(report.framing > 50, `${report.framing} raw malformed requests`);
    assert.ok((report.statuses[200] ?? 0) > 50, JSON.stringify(report.statuses));
    assert.ok((report.statuses[422] ?? 0) > 50, JSON.stringify(report.statuses));
    const bad = server.output().split("\n").filter((l) =>
      / 5\d\d id=|^\S+ ERROR/.test(l) && !l.includes("GET /health")
    );
    assert.deepEqual(bad, []);
  } finally {
    await server.stop();
  }
});

Deno.test("deno task load: status counts, latency quantiles and the server's memory", async () => {
  const { load } = await import("./load.ts");
  const { startServer } = await import("../src/test_server.ts");
  const server = await startServer(["--device", "cpu", "--max-queue", "4"]);
  try {
    const report = await load(server.url, {
      clients: 8,
      seconds: 2,
      body: { prompt: "x", size: "64x64" },
      settleS: 1,
    });
    assert.ok(report.requests > 8);
    assert.deepEqual(
      Object.keys(report.statuses).filter((s) => s !== "200" && s !== "429"),
      [],
      JSON.stringify(report.statuses),
    );
    assert.ok(report.p99Ms >= report.p50Ms);
    assert.ok(
      report.rss.some((s) => s.phase === "before") && report.rss.some((s) => s.phase === "after"),
    );
  } finally {
    await server.stop();
  }
});

Deno.test("deno task conformance refuses bad flags in one line with exit 2, like serve", async () => {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", MAIN, "--bogus"],
    stdout: "piped",
    stderr: "piped",
  }).output();
  assert.equal(out.code, 2);
  assert.equal(
    new TextDecoder().decode(out.stderr),
    "error: Unknown option '--bogus'\nRun with --help for the options.\n",
  );
});
