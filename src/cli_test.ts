import assert from "node:assert/strict";
import { withFlagTable } from "../scripts/gen_readme.ts";
import { CliError, FLAGS, helpText, parseCli } from "./cli.ts";

const env = (vars: Record<string, string>) => (name: string) => vars[name];

Deno.test("parseCli: defaults, flags over DENOISE_* variables, aliases, positional model", () => {
  const d = parseCli([], env({}));
  assert.equal(d.port, 8000);
  assert.equal(d.host, "127.0.0.1");
  assert.equal(d.device, "auto");
  assert.equal(d.maxQueue, 16);
  assert.equal(d.exitOnLoadFailure, false);
  assert.deepEqual(d.allowedMethods, ["*"]);
  assert.equal(d.allowedOrigins, undefined);

  const o = parseCli(
    ["Qwen/Qwen-Image", "--omni", "--port=9000", "--max-generated-image-size", "4096"],
    env({ DENOISE_PORT: "7000", DENOISE_HOST: "0.0.0.0", DENOISE_EXIT_ON_LOAD_FAILURE: "1" }),
  );
  assert.equal(o.model, "Qwen/Qwen-Image");
  assert.equal(o.port, 9000); // the flag wins
  assert.equal(o.host, "0.0.0.0"); // from the environment
  assert.equal(o.exitOnLoadFailure, true);
  assert.equal(o.maxImagePixels, 4096);
  assert.equal(parseCli(["--uvicorn-log-level", "debug"], env({})).logLevel, "debug");
  assert.deepEqual(
    parseCli(["--allowed-origins", '["http://a", "http://b"]'], env({})).allowedOrigins,
    ["http://a", "http://b"],
  );
  assert.deepEqual(parseCli(["--allowed-origins", "http://a, http://b"], env({})).allowedOrigins, [
    "http://a",
    "http://b",
  ]);
  assert.equal(parseCli([], env({ DENOISE_API_KEY: "k" })).apiKey, "k");
  assert.equal(parseCli([], env({})).shardSize, "auto");
  assert.equal(parseCli(["--shard-size", "512M"], env({})).shardSize, "512M");
  assert.equal(parseCli([], env({ PORT: "9100" })).port, 9100);
  assert.equal(parseCli([], env({ PORT: "9100", DENOISE_PORT: "9200" })).port, 9200);
});

Deno.test("parseCli: every bad value is a one-line CliError naming the flag or variable", () => {
  for (
    const [args, vars, message] of [
      [["--port", "70000"], {}, /^--port must be an integer 0–65535, got "70000"$/],
      [[], { DENOISE_PORT: "x" }, /^DENOISE_PORT must be an integer/],
      [
        [],
        { DENOISE_EXIT_ON_LOAD_FAILURE: "maybe" },
        /^DENOISE_EXIT_ON_LOAD_FAILURE must be true or false/,
      ],
      [["--log-format", "xml"], {}, /one of text, json/],
      [["--bogus"], {}, /Unknown option '--bogus'/],
      [["a/b", "c/d"], {}, /at most one model/],
      [["a/b", "--model", "c/d"], {}, /either as --model or positionally/],
      [["--allowed-origins", "*", "--allow-credentials"], {}, /explicit --allowed-origins/],
      [["--public-url", "ftp://x"], {}, /http\(s\) URL/],
      [["--allowed-origins", "[1]"], {}, /JSON list of strings/],
      [
        ["--shard-size", "huge"],
        {},
        /^--shard-size must be auto or a size in bytes .* got "huge"$/,
      ],
    ] as const
  ) {
    assert.throws(
      () => parseCli(args, env(vars as Record<string, string>)),
      (e: Error) => e instanceof CliError && message.test(e.message) && !e.message.includes("\n"),
      `${args.join(" ")} ${JSON.stringify(vars)}`,
    );
  }
});

Deno.test("--help lists every flag with its variable; the README's table is generated from the same table", async () => {
  const help = helpText();
  for (const flag of FLAGS) assert.ok(help.includes(`--${flag.name}`), flag.name);
  assert.ok(help.includes("DENOISE_MAX_BATCH_SIZE"));
  const readme = await Deno.readTextFile(new URL("../README.md", import.meta.url));
  const fmt = new Deno.Command(Deno.execPath(), {
    args: ["fmt", "--ext=md", "-"],
    stdin: "piped",
    stdout: "piped",
  }).spawn();
  const writer = fmt.stdin.getWriter();
  await writer.write(new TextEncoder().encode(withFlagTable(readme)));
  await writer.close();
  const formatted = new TextDecoder().decode((await fmt.output()).stdout);
  assert.ok(
    formatted === readme,
    "README.md's flag table drifted from src/cli.ts: run deno task gen",
  );
});

Deno.test("--cache-backend and --cache-config: the step cache requests get; bad settings are one line", () => {
  assert.equal(parseCli([], env({})).cache, undefined);
  assert.deepEqual(parseCli(["--cache-backend", "tea_cache"], env({})).cache, {
    backend: "tea_cache",
    threshold: 1,
    warmup: 2,
    maxCached: 2,
    taylorseer: 1,
  });
  assert.deepEqual(
    parseCli(["--cache-backend", "cache_dit", "--cache-config", '{"threshold":0.1}'], env({}))
      .cache,
    { backend: "cache_dit", threshold: 0.1, warmup: 2, maxCached: 3 },
  );
  assert.equal(
    parseCli(
      [],
      env({ DENOISE_CACHE_BACKEND: "tea_cache", DENOISE_CACHE_CONFIG: '{"rel_l1_thresh":0.3}' }),
    )
      .cache?.threshold,
    0.3,
  );
  assert.equal(parseCli(["--cfg-parallel-size", "1"], env({})).cfgParallelSize, 1);
  assert.equal(parseCli(["--cfg-parallel-size", "2"], env({})).cfgParallelSize, 2);
  assert.equal(parseCli([], env({})).cfgMode, "auto");
  assert.equal(parseCli(["--cfg-mode", "sequential"], env({})).cfgMode, "sequential");
  assert.equal(parseCli([], env({})).enableCpuOffload, false);
  assert.equal(parseCli(["--enable-cpu-offload"], env({})).enableCpuOffload, true);
  for (
    const [args, message] of [
      [
        ["--cache-backend", "mag_cache"],
        /^--cache-backend must be one of none, tea_cache, cache_dit/,
      ],
      [
        ["--cache-backend", "tea_cache", "--cache-config", "{bad"],
        /^--cache-config must be a JSON object, got "\{bad"$/,
      ],
      [
        ["--cache-backend", "tea_cache", "--cache-config", '{"threshold":-1}'],
        /^--cache-config: threshold must be a number in \(0, 10\]$/,
      ],
      [
        ["--cache-backend", "tea_cache", "--cache-config", '{"warm":1}'],
        /^--cache-config: unknown field "warm"/,
      ],
      [
        ["--cache-backend", "tea_cache", "--cache-config", '{"backend":"cache_dit"}'],
        /give the backend with --cache-backend/,
      ],
      [
        ["--cache-config", '{"threshold":0.1}'],
        /^--cache-config needs --cache-backend tea_cache or cache_dit$/,
      ],
      [["--cfg-mode", "parallel"], /^--cfg-mode must be one of auto, batch, sequential/],
      [["--cfg-parallel-size", "3"], /^--cfg-parallel-size must be an integer 1–2/],
    ] as const
  ) {
    assert.throws(
      () => parseCli(args, env({})),
      (e: Error) => e instanceof CliError && message.test(e.message) && !e.message.includes("\n"),
      args.join(" "),
    );
  }
});

Deno.test("a bad --cache-config stops the server with the error line (and the help hint every bad flag gets), status 2", async () => {
  const { code, stdout, stderr } = await new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "-A",
      new URL("./main.ts", import.meta.url).pathname,
      "--port",
      "0",
      "--cache-backend",
      "tea_cache",
      "--cache-config",
      '{"max_cached":0}',
    ],
    stdout: "piped",
    stderr: "piped",
  }).output();
  assert.equal(code, 2);
  assert.equal(new TextDecoder().decode(stdout), "");
  const lines = new TextDecoder().decode(stderr).trim().split("\n");
  assert.deepEqual(lines, [
    "error: --cache-config: max_cached must be an integer ≥ 1",
    "Run with --help for the options.",
  ]);
});
