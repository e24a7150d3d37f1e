import assert from "node:assert/strict";
import { decode } from "fast-png";
import { readImage } from "../../scripts/judge.ts";
import { allRight, type Expectation, judge, readScene } from "../../scripts/scene_check.ts";
import { DEFAULT_PROMPT, requestParams } from "./openai_chat_client.ts";

const HERE = new URL(".", import.meta.url).pathname;
const ADAPTER = "shapes-palette-swap";

/** What the default prompt names, in the scene checker's terms. */
const DEFAULT_SCENE: Expectation = {
  colour: "yellow",
  shape: "star",
  background: "black",
  size: "large",
  position: "top left",
};

/** This PATH without the folders that hold a `deno`: a user who has only npx. */
function pathWithoutDeno(): string {
  return (Deno.env.get("PATH") ?? "").split(":").filter((dir) => {
    try {
      return !Deno.statSync(`${dir}/deno`).isFile;
    } catch {
      return true;
    }
  }).join(":");
}

/**
 * `run_server.sh` as a user of the README starts it: deno is not on PATH and DENO is not set, so
 * the script takes the binary of `npx -y deno@2.9.6` (the embedded model, the shipped adapters).
 */
async function startExampleServer() {
  const env = Deno.env.toObject();
  delete env.DENO;
  const child = new Deno.Command("bash", {
    args: [`${HERE}/run_server.sh`, "--device", "cpu"],
    env: { ...env, PATH: pathWithoutDeno(), PORT: "0" },
    clearEnv: true,
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  let log = "";
  const decoder = new TextDecoder();
  for (const stream of [child.stdout, child.stderr]) {
    (async () => {
      for await (const chunk of stream) log += decoder.decode(chunk);
    })();
  }
  const deadline = Date.now() + 60_000;
  let port = "";
  while (!port) {
    port = log.match(/listening on http:\/\/[\d.]+:(\d+)/)?.[1] ?? "";
    if (!port && Date.now() > deadline) throw new Error(`no server:\n${log}`);
    await new Promise((r) => setTimeout(r, 50));
  }
  for (;;) {
    const res = await fetch(`http://localhost:${port}/health`);
    await res.body?.cancel();
    if (res.ok) break;
    if (Date.now() > deadline) throw new Error(`not ready:\n${log}`);
    await new Promise((r) => setTimeout(r, 100));
  }
  return {
    port,
    async stop() {
      child.kill("SIGTERM");
      await child.status;
      // The SIGTERM reached the server itself (npx would not have passed it on).
      await assert.rejects(fetch(`http://localhost:${port}/health`));
    },
  };
}

const server = await startExampleServer();
const work = await Deno.makeTempDir({ prefix: "denoise-examples-" });
Deno.test.afterAll(async () => {
  await server.stop();
  await Deno.remove(work, { recursive: true });
});

async function run(command: string, args: string[], env: Record<string, string> = {}) {
  const out = await new Deno.Command(command, { args, cwd: work, env, stderr: "piped" }).output();
  assert.equal(out.code, 0, new TextDecoder().decode(out.stderr));
}

/** Of a PNG's strongly coloured pixels, the share whose red and whose blue channel leads. */
async function redAndBlue(file: string): Promise<{ red: number; blue: number }> {
  const png = decode(await Deno.readFile(`${work}/${file}`));
  const px = png.data as Uint8Array;
  let red = 0, blue = 0, coloured = 0;
  for (let i = 0; i < px.length; i += png.channels) {
    const [r, g, b] = [px[i], px[i + 1], px[i + 2]];
    if (Math.max(r, g, b) - Math.min(r, g, b) < 100) continue; // white, black, grey, edges
    coloured++;
    if (r > g && r > b) red++;
    if (b > r && b > g) blue++;
  }
  return { red: red / Math.max(coloured, 1), blue: blue / Math.max(coloured, 1) };
}

/** What the scene checker reads in a PNG, and whether it is what the default prompt names. */
async function drawsDefaultScene(file: string) {
  const seen = readScene(await readImage(`${work}/${file}`));
  return { ok: allRight(judge(DEFAULT_SCENE, seen)), seen: { ...seen, features: undefined } };
}

Deno.test("run_curl_text_to_image.sh with its defaults draws its default prompt", async () => {
  const script = await Deno.readTextFile(`${HERE}/run_curl_text_to_image.sh`);
  assert.ok(script.includes(`PROMPT:-${DEFAULT_PROMPT}}`), "the two examples share a prompt");
  await run("bash", [`${HERE}/run_curl_text_to_image.sh`], { PORT: server.port });
  const png = decode(await Deno.readFile(`${work}/output.png`));
  assert.deepEqual([png.width, png.height], [256, 256]);
  const { ok, seen } = await drawsDefaultScene("output.png");
  await Deno.remove(`${work}/output.png`); // the LoRA curl below writes the same name
  assert.ok(ok, JSON.stringify(seen));
});

Deno.test("openai_chat_client.ts with its defaults draws its default prompt", async () => {
  await run(Deno.execPath(), [
    "run",
    "-A",
    "--node-modules-dir=auto",
    `${HERE}/openai_chat_client.ts`,
    ...["--server", `http://localhost:${server.port}`, "--seed", "7", "--output", "client.png"],
  ]);
  const { ok, seen } = await drawsDefaultScene("client.png");
  assert.ok(ok, JSON.stringify(seen));
});

Deno.test("openai_chat_client.ts with --lora-path applies the shipped adapter", async () => {
  const client = (output: string, lora: string[] = []) =>
    run(Deno.execPath(), [
      "run",
      "-A",
      "--node-modules-dir=auto",
      `${HERE}/openai_chat_client.ts`,
      ...["--server", `http://localhost:${server.port}`, "--seed", "42", "--steps", "20"],
      ...["--prompt", "a red circle on a white background", "--output", output],
      ...lora,
    ]);
  await client("base.png");
  await client("lora.png", ["--lora-path", ADAPTER, "--lora-name", "palette", "--lora-scale", "1"]);
  // The base draws the red circle asked for; the palette swap draws red as blue.
  const [base, lora] = [await redAndBlue("base.png"), await redAndBlue("lora.png")];
  assert.ok(base.red > 0.9 && base.blue < 0.05, `base: ${JSON.stringify(base)}`);
  assert.ok(lora.blue > 0.9 && lora.red < 0.05, `with the adapter: ${JSON.stringify(lora)}`);
});

Deno.test("the text-to-image example's LoRA curl (Images API) works with the shipped adapter", async () => {
  const script = `curl -sf -X POST http://localhost:${server.port}/v1/images/generations \\
  -H "Content-Type: application/json" \\
  -d '{
    "prompt": "A piece of cheesecake",
    "size": "256x256",
    "seed": 42,
    "lora": {
      "name": "my_lora",
      "local_path": "${ADAPTER}",
      "scale": 1.0
    }
  }' | jq -r '.data[0].b64_json' | base64 -d > output.png`;
  await run("bash", ["-c", script]);
  const png = decode(await Deno.readFile(`${work}/output.png`));
  assert.deepEqual([png.width, png.height], [256, 256]);
});

Deno.test("the chat client's flags become the request's image parameters", () => {
  const { values, extra } = requestParams([
    ...["--prompt", "p", "--height", "64", "--width", "128", "--seed", "3"],
    ...["--lora-path", "/x/my_adapter/", "--lora-scale", "0.5"],
  ]);
  assert.equal(values.output, "output.png");
  assert.deepEqual(extra.lora, { name: "my_adapter", local_path: "/x/my_adapter/", scale: 0.5 });
  assert.deepEqual([extra.height, extra.width, extra.seed], [64, 128, 3]);
});
