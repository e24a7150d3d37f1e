/**
 * `deno task conformance --base-url URL [--model NAME] [--only PATTERN] [--report FILE]
 * [--expect-unready]`: replays the documented examples and error cases against any
 * OpenAI/vLLM-Omni-compatible image server, prints a table, optionally writes a JSON report (or
 * JUnit XML when FILE ends in .xml), and exits 1 if any case fails.
 *
 * @module
 */
import { parseFlags } from "./args.ts";
import { CASES, MODEL_PLACEHOLDER } from "./cases.ts";
import { type CaseResult, probeTools, runCase } from "./runner.ts";

const HELP =
  `Usage: deno task conformance --base-url URL [--model NAME] [--only PATTERN] [--report FILE] [--expect-unready]

  --base-url URL     server to test, e.g. http://localhost:8000
  --model NAME       model name for examples that name one (default: the first of GET /v1/models)
  --only PATTERN     run only cases whose id matches this regular expression
  --report FILE      write results as JSON, or JUnit XML if FILE ends in .xml
  --expect-unready   the target runs without a ready engine: run only the 503 case
  --lora-path PATH   PEFT LoRA adapter folder on the server; runs the documented LoRA example
`;

const values = parseFlags({
  "base-url": { type: "string" },
  model: { type: "string" },
  only: { type: "string" },
  report: { type: "string" },
  "expect-unready": { type: "boolean", default: false },
  "lora-path": { type: "string" },
  help: { type: "boolean", short: "h" },
});
if (values.help || !values["base-url"]) {
  if (!values.help) console.error("error: --base-url is required");
  console.log(HELP);
  Deno.exit(values.help ? 0 : 2);
}
const baseUrl = values["base-url"].replace(/\/+$/, "");

/**
 * The target's first model, and whether it can edit: only a `max_edit_images` of 0 (this
 * server's extension of `/v1/models`) says it cannot; other servers are assumed to.
 */
async function target(): Promise<{ model: string; canEdit: boolean }> {
  try {
    const res = await fetch(`${baseUrl}/v1/models`);
    const first = (await res.json())?.data?.[0];
    const model = typeof first?.id === "string" ? first.id : MODEL_PLACEHOLDER;
    return { model, canEdit: first?.max_edit_images !== 0 };
  } catch {
    return { model: MODEL_PLACEHOLDER, canEdit: true };
  }
}

const only = values.only ? new RegExp(values.only) : undefined;
const { model, canEdit } = await target();
const ctx = {
  baseUrl,
  model: values.model ?? model,
  canEdit,
  expectUnready: values["expect-unready"],
  loraPath: values["lora-path"],
  ...(await probeTools()),
};
const results: CaseResult[] = [];
for (const c of CASES.filter((c) => !only || only.test(c.id))) results.push(await runCase(c, ctx));

const cell = (s: string) => s.replaceAll("|", "\\|").replaceAll("\n", " ");
console.log(`Conformance against ${baseUrl} (model ${ctx.model})\n`);
console.log("| case | source | expected | got | result |\n|---|---|---|---|---|");
for (const r of results) {
  console.log(
    `| ${r.id} | ${cell(r.source)} | ${cell(r.expected)} | ${cell(r.got)} | ${r.status} |`,
  );
}
const count = (s: CaseResult["status"]) => results.filter((r) => r.status === s).length;
console.log(
  `\nconformance: ${count("pass")} passed, ${count("fail")} failed, ${count("skip")} skipped`,
);

if (values.report) {
  const xml = (s: string) => s.replace(/[<>&"]/g, (ch) => `&#${ch.charCodeAt(0)};`);
  const report = values.report.endsWith(".xml")
    ? `<?xml version="1.0" encoding="UTF-8"?>\n<testsuite name="denoise-conformance" tests="${results.length}" failures="${
      count("fail")
    }" skipped="${count("skip")}">\n${
      results.map((r) =>
        `  <testcase classname="${xml(r.source)}" name="${xml(r.id)}">${
          r.status === "fail"
            ? `<failure message="${xml(r.got)}">expected ${xml(r.expected)}</failure>`
            : r.status === "skip"
            ? `<skipped message="${xml(r.got)}"/>`
            : ""
        }</testcase>`
      ).join("\n")
    }\n</testsuite>\n`
    : JSON.stringify({ baseUrl, model: ctx.model, results }, null, 2) + "\n";
  await Deno.writeTextFile(values.report, report);
}
Deno.exit(count("fail") > 0 ? 1 : 0);
