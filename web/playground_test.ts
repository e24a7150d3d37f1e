/**
 * The playground and /docs in headless Chromium (Debian's `chromium`, driven by playwright-core)
 * against the real server, with every request that would leave loopback refused and counted.
 * Skipped, saying why, where no Chromium is installed. `UPDATE_SCREENSHOTS=1` writes the
 * screenshots shown in the README to docs/.
 */
import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import axe from "axe-core";
import { type BrowserContext, chromium, type Page } from "playwright-core";
import { startServer, startUnloadableServer, type TestServer } from "../src/test_server.ts";

const CHROMIUM = "/usr/bin/chromium";
const hasChromium = (() => {
  try {
    return Deno.statSync(CHROMIUM).isFile;
  } catch {
    return false;
  }
})();
const SD15 = new URL("../fixtures/models/sd15-tiny", import.meta.url).pathname;
const PALETTE_SWAP = new URL("../models/loras/shapes-palette-swap", import.meta.url).pathname;
const STYLE_LORA = new URL("../fixtures/loras/sd15-tiny/peft", import.meta.url).pathname;
const SCREENSHOTS = Deno.env.get("UPDATE_SCREENSHOTS") === "1";
const hasCurlTools = ["curl", "jq", "base64"].every((tool) =>
  new Deno.Command("sh", { args: ["-c", `command -v ${tool}`], stdout: "null" }).outputSync()
    .success
);

/** A browser context whose requests may only reach loopback; `outside` lists any that tried. */
async function withBrowser(
  fn: (context: BrowserContext, outside: string[]) => Promise<void>,
  viewport = { width: 1280, height: 900 },
): Promise<void> {
  const browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: [
      "--no-sandbox",
      "--disable-gpu",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
      "--no-first-run",
    ],
  });
  const context = await browser.newContext({ viewport });
  const outside: string[] = [];
  await context.route("**/*", (route) => {
    const url = new URL(route.request().url());
    const loopback = ["127.0.0.1", "localhost", "[::1]"].includes(url.hostname);
    if (loopback || url.protocol === "data:" || url.protocol === "blob:") return route.continue();
    outside.push(url.href);
    return route.abort();
  });
  try {
    await fn(context, outside);
  } finally {
    await browser.close();
  }
}

async function openPlayground(context: BrowserContext, server: TestServer): Promise<Page> {
  const page = await context.newPage();
  await page.goto(`${server.url}/`);
  await page.getByRole("button", { name: "Generate" }).and(page.locator(":enabled")).waitFor();
  await page.locator('#size option[value="256x256"]').waitFor({ state: "attached" });
  return page;
}

/** The bytes of the newest gallery image, read back from its download link. */
async function galleryBytes(page: Page): Promise<Uint8Array> {
  // A string, so that this Deno-checked file needs no DOM types.
  const bytes = await page.evaluate<number[]>(`(async () => {
    const link = document.querySelector("#gallery figure a[download]");
    return Array.from(new Uint8Array(await (await fetch(link.href)).arrayBuffer()));
  })()`);
  return Uint8Array.from(bytes);
}

const clipboardText = (page: Page) => page.evaluate<string>("navigator.clipboard.readText()");

/**
 * Records every stage (`preview 1`, …, `final`) the live area shows from now on. A fast
 * generation can show its previews and clear them between two polls of a locator, so the test
 * asks the page what it showed rather than waiting to catch a preview on screen.
 */
async function recordLiveStages(page: Page): Promise<() => Promise<string[]>> {
  await page.evaluate(`(() => {
    window.liveStages = [];
    new MutationObserver((records) => {
      for (const r of records) {
        const img = r.type === "attributes" ? r.target : null;
        if (img?.dataset.stage) window.liveStages.push(img.dataset.stage);
      }
    }).observe(document.getElementById("live"), {
      subtree: true,
      attributes: true,
      attributeFilter: ["data-stage"],
    });
  })()`);
  return () => page.evaluate<string[]>("window.liveStages");
}

/**
 * Runs axe-core (its own source, injected into the page) on the page in the dark and the light
 * colour scheme, and on each `hovered` element with the pointer over it, and fails with every
 * violation found. Also checks that the two schemes look different.
 */
async function assertAccessible(page: Page, hovered: string[] = []): Promise<void> {
  if (!(await page.evaluate<boolean>("typeof axe === 'object'"))) {
    await page.addScriptTag({ content: (axe as unknown as { source: string }).source });
  }
  const check = async (context: string) =>
    await page.evaluate<string[]>(`axe.run(${JSON.stringify(context)}).then((r) =>
      r.violations.flatMap((v) => v.nodes.map((n) => v.id + " " + n.target.join(" ") + ": " +
        n.failureSummary.replaceAll("\\n", " "))))`);
  const found: string[] = [];
  const backgrounds = new Set<string>();
  for (const colorScheme of ["dark", "light"] as const) {
    await page.emulateMedia({ colorScheme });
    backgrounds.add(await page.evaluate<string>("getComputedStyle(document.body).background"));
    await page.mouse.move(0, 0);
    found.push(...(await check("html")).map((v) => `${colorScheme}: ${v}`));
    for (const selector of hovered) {
      await page.hover(selector);
      found.push(...(await check(selector)).map((v) => `${colorScheme}, hovered: ${v}`));
    }
  }
  await page.emulateMedia({ colorScheme: null });
  assert.deepEqual(found, []);
  assert.equal(backgrounds.size, 2, "the light scheme looks like the dark one");
}

const test = (name: string, fn: () => Promise<void>) =>
  Deno.test({
    name,
    ignore: !hasChromium,
    fn,
    sanitizeOps: false,
    sanitizeResources: false,
  });

if (!hasChromium) {
  console.log(`playground tests skipped: no Chromium at ${CHROMIUM} (apt-get install chromium)`);
}

test("playground: prompt → Generate → previews, progress, then the final image; copy as curl reproduces it", async () => {
  // The embedded model, with its shipped adapter registered so that the picker shows.
  const server = await startServer([
    ...["--device", "cpu", "--lora-modules", `palette-swap=${PALETTE_SWAP}`],
  ]);
  try {
    await withBrowser(async (context, outside) => {
      await context.grantPermissions(["clipboard-read", "clipboard-write"]);
      const page = await openPlayground(context, server);
      await page.getByLabel("Prompt", { exact: true }).fill("a red circle on a blue background");
      await page.getByLabel("Size").selectOption("256x256");
      await page.getByLabel("Steps").fill("40");
      await page.getByLabel("random").uncheck();
      await page.getByLabel("Seed").fill("42");
      const liveStages = await recordLiveStages(page);
      await page.getByRole("button", { name: "Generate" }).click();
      await page.locator("#progress-text", { hasText: /step \d+ of 40/ }).waitFor();
      await page.locator("#gallery figure").waitFor();
      assert.match((await liveStages()).join(), /^preview 1,.*final$/);
      assert.match(
        await page.locator("#gallery figcaption .meta").innerText(),
        /256x256 · seed 42/,
      );
      const bytes = await galleryBytes(page);
      const view = new DataView(bytes.buffer);
      assert.deepEqual([view.getUint32(16), view.getUint32(20)], [256, 256]);
      if (SCREENSHOTS) {
        await page.mouse.move(0, 0);
        await page.screenshot({ path: "docs/playground.png" });
      }

      await page.getByRole("button", { name: "Copy as curl" }).click();
      const command = await clipboardText(page);
      assert.match(command, /^curl -s http:\/\/127\.0\.0\.1:\d+\/v1\/images\/generations/);
      assert.match(command, /"seed":42/);
      if (hasCurlTools) {
        const dir = await Deno.makeTempDir();
        try {
          const run = await new Deno.Command("bash", { args: ["-c", command], cwd: dir }).output();
          assert.ok(run.success, new TextDecoder().decode(run.stderr));
          assert.deepEqual(await Deno.readFile(`${dir}/denoise-42-1.png`), bytes);
        } finally {
          await Deno.remove(dir, { recursive: true });
        }
      }
      await page.getByRole("button", { name: "Copy as openai SDK" }).click();
      assert.match(
        await clipboardText(page),
        /client\.images\.generate\(prompt="a red circle on a blue background", n=1, size="256x256", extra_body=\{.*"seed": 42/,
      );
      assert.deepEqual(outside, []);
    });
  } finally {
    await server.stop();
  }
});

test("playground: edit mode: choose an image, paint a mask, strength → an edit through /v1/images/edits; Edit this and drop load images; hidden when the model cannot edit", async () => {
  const server = await startServer(["--device", "cpu"]);
  const noEncoder = await startServer(["--model", SD15, "--device", "cpu"]);
  try {
    await withBrowser(async (context, outside) => {
      const page = await openPlayground(context, server);
      await page.getByRole("group", { name: /Edit an image/ }).waitFor();
      const { default: sharp } = await import("sharp");
      const scene = await sharp(
        { create: { width: 256, height: 256, channels: 3, background: "#2030d0" } },
      )
        .composite([{
          input: Buffer.from(
            '<svg width="256" height="256"><circle cx="160" cy="96" r="48" fill="#e02020"/></svg>',
          ),
        }]).png().toBuffer();
      await page.locator("#edit-file").setInputFiles({
        name: "scene.png",
        mimeType: "image/png",
        buffer: scene,
      });
      const mask = page.getByLabel("Mask: paint where to repaint");
      await mask.waitFor();
      const box = (await mask.boundingBox())!;
      // A stroke down the left third of the image.
      await page.mouse.move(box.x + box.width * 0.15, box.y + 10);
      await page.mouse.down();
      await page.mouse.move(box.x + box.width * 0.15, box.y + box.height - 10, { steps: 8 });
      await page.mouse.up();
      await page.getByLabel("Strength").fill("0.9");
      await page.getByLabel("Prompt", { exact: true }).fill("a red circle on a green background");
      const sent = page.waitForRequest("**/v1/images/edits");
      const liveStages = await recordLiveStages(page);
      await page.getByRole("button", { name: "Generate" }).click();
      const body = new TextDecoder().decode((await sent).postDataBuffer()!);
      for (const field of ["image", "mask", "strength", "prompt", "stream"]) {
        assert.match(body, new RegExp(`name="${field}"`), field);
      }
      await page.locator("#gallery figure").waitFor();
      assert.match((await liveStages()).join(), /^preview 1,.*final$/);
      assert.match(
        await page.locator("#gallery figcaption .meta").innerText(),
        /^edit \(masked\), strength 0\.9 · 256x256 · seed \d+/,
      );
      assert.equal(await page.getByRole("button", { name: "Copy as curl" }).count(), 0);
      assert.match(server.output(), /POST \/v1\/images\/edits 200/);

      // "Edit this" loads the result, with an empty mask; Remove image, then a dropped file.
      // A pixel of the painted third: blue in the input, repainted in the result.
      const pixel = `Array.from(document.getElementById("edit-image").getContext("2d")
        .getImageData(40, 128, 1, 1).data).join()`;
      const before = await page.evaluate<string>(pixel);
      await page.getByRole("button", { name: "Edit this" }).click();
      await page.waitForFunction(`${pixel} !== ${JSON.stringify(before)}`);
      await page.getByRole("button", { name: "Remove image" }).click();
      await page.getByRole("button", { name: /Drop, paste or choose an image/ }).waitFor();
      await page.evaluate(`(() => {
        const data = new DataTransfer();
        const bytes = new Uint8Array(${JSON.stringify([...scene])});
        data.items.add(new File([bytes], "d.png", { type: "image/png" }));
        document.getElementById("edit-drop")
          .dispatchEvent(new DragEvent("drop", { dataTransfer: data, bubbles: true }));
      })()`);
      await mask.waitFor();
      assert.equal(await page.evaluate<string>(pixel), before);
      await assertAccessible(page);

      const other = await openPlayground(context, noEncoder);
      await other.locator("#model", { hasText: "sd15-tiny" }).waitFor();
      assert.equal(await other.locator("#edit-field").isHidden(), true);
      assert.deepEqual(outside, []);
    });
  } finally {
    await server.stop();
    await noEncoder.stop();
  }
});

test("playground: with the server's step cache, the image says how many steps were cached", async () => {
  const server = await startServer([
    ...["--device", "cpu", "--cache-backend", "tea_cache", "--cache-config", '{"threshold":0.4}'],
  ]);
  try {
    await withBrowser(async (context) => {
      const page = await openPlayground(context, server);
      await page.getByLabel("Prompt", { exact: true }).fill("a red circle on a blue background");
      await page.getByLabel("Steps").fill("20");
      await page.getByRole("button", { name: "Generate" }).click();
      await page.locator("#gallery figure").waitFor();
      const meta = await page.locator("#gallery figcaption .meta").innerText();
      const cached = Number(meta.match(/ · (\d+) steps cached/)?.[1]);
      assert.ok(cached >= 6 && cached < 20, meta);
    });
  } finally {
    await server.stop();
  }
});

test("playground: Cancel and Escape stop the running generation (the server logs 499)", async () => {
  const server = await startServer(["--model", SD15, "--device", "cpu"]);
  try {
    await withBrowser(async (context, outside) => {
      const page = await openPlayground(context, server);
      await page.getByLabel("Prompt", { exact: true }).fill("a very slow picture");
      await page.getByLabel("Size").selectOption("1024x1024");
      await page.getByLabel("Steps").fill("200");
      await page.getByRole("button", { name: "Generate" }).click();
      await page.locator("#progress-text", { hasText: /step \d+ of 200/ }).waitFor();
      await page.getByRole("button", { name: "Cancel" }).click();
      await page.getByRole("alert").filter({ hasText: "Cancelled." }).waitFor();
      await page.getByRole("button", { name: "Generate" }).and(page.locator(":enabled")).waitFor();
      await logged499s(server, 1);
      assert.equal(await page.locator("#gallery figure").count(), 0);

      // Escape does the same.
      await page.getByRole("button", { name: "Generate" }).click();
      await page.locator("#progress-text", { hasText: /step \d+ of 200/ }).waitFor();
      await page.keyboard.press("Escape");
      await page.getByRole("alert").filter({ hasText: "Cancelled." }).waitFor();
      await page.getByRole("button", { name: "Generate" }).and(page.locator(":enabled")).waitFor();
      await logged499s(server, 2);
      assert.equal(await page.locator("#gallery figure").count(), 0);
      assert.deepEqual(outside, []);
    });
  } finally {
    await server.stop();
  }
});

/** Waits (5 s at most) until the server has logged `count` generations as 499. */
async function logged499s(server: TestServer, count: number): Promise<void> {
  const deadline = Date.now() + 5000;
  while ((server.output().match(/POST \/v1\/images\/generations 499/g)?.length ?? 0) < count) {
    assert.ok(Date.now() < deadline, server.output());
    await new Promise((r) => setTimeout(r, 50));
  }
}

test("playground: the server's error is shown; a server without a model shows its state", async () => {
  const server = await startServer(["--model", SD15, "--device", "cpu"]);
  const broken = await startUnloadableServer();
  try {
    await withBrowser(async (context, outside) => {
      const page = await openPlayground(context, server);
      await page.getByLabel("Prompt", { exact: true }).fill("too big");
      await page.getByLabel("Size").selectOption("custom");
      await page.getByLabel("Width").fill("2048");
      await page.getByLabel("Height").fill("2048");
      await page.getByRole("button", { name: "Generate" }).click();
      await page.getByRole("alert").filter({ hasText: /exceeds the maximum allowed size/ })
        .waitFor();
      await page.getByLabel("Prompt", { exact: true }).fill("");
      await page.getByRole("button", { name: "Generate" }).click();
      await page.getByRole("alert").filter({ hasText: "Enter a prompt." }).waitFor();

      const down = await context.newPage();
      await down.goto(`${broken.url}/`);
      await down.getByRole("status").filter({ hasText: /Model failed to load/ }).waitFor();
      assert.ok(await down.getByRole("button", { name: "Generate" }).isDisabled());
      assert.deepEqual(outside, []);
    });
  } finally {
    await server.stop();
    await broken.stop();
  }
});

test("playground: a server with --api-key asks for the key, says when it was refused, then generates", async () => {
  const server = await startServer(["--model", SD15, "--device", "cpu", "--api-key", "sekret"]);
  try {
    await withBrowser(async (context, outside) => {
      const page = await context.newPage();
      await page.goto(`${server.url}/`);
      const refused = page.getByRole("alert").filter({ hasText: "The server refused that key" });
      assert.equal(await refused.isVisible(), false);
      await page.getByLabel("API key").fill("wrong");
      await page.getByRole("button", { name: "Use key" }).click();
      await refused.waitFor();
      await assertAccessible(page);
      await page.getByLabel("API key").fill("sekret");
      await page.getByRole("button", { name: "Use key" }).click();
      await page.locator('#size option[value="256x256"]').waitFor({ state: "attached" });
      await page.getByLabel("Prompt", { exact: true }).fill("a key");
      await page.getByLabel("Size").selectOption("256x256");
      await page.getByLabel("Steps").fill("2");
      await page.getByRole("button", { name: "Generate" }).click();
      await page.locator("#gallery figure").waitFor();
      assert.equal(
        await page.evaluate<string>("sessionStorage.getItem('denoise-api-key')"),
        "sekret",
      );
      assert.deepEqual(outside, []);
    });
  } finally {
    await server.stop();
  }
});

test("playground: LoRA picker from /v1/models, a seed per image of n: 2, Reuse, Copied, kept across a reload until cleared; axe-clean in both colour schemes", async () => {
  const server = await startServer([
    ...["--model", SD15, "--device", "cpu", "--lora-modules", `style=${STYLE_LORA}`],
  ]);
  try {
    await withBrowser(async (context, outside) => {
      await context.grantPermissions(["clipboard-read", "clipboard-write"]);
      const page = await openPlayground(context, server);
      const lora = page.getByLabel("LoRA", { exact: true });
      assert.deepEqual(await lora.locator("option").allInnerTexts(), ["none", "style"]);
      await page.getByLabel("Prompt", { exact: true }).fill("a red cube");
      await lora.selectOption("style");
      await page.getByLabel("Size").selectOption("256x256");
      await page.getByLabel("Steps").fill("2");
      await page.getByLabel("random").uncheck();
      await page.getByLabel("Seed").fill("7");
      // Out of the form's bounds (web/limits_test.ts holds them to the spec's): a message.
      for (
        const [label, value, message] of [
          ["LoRA scale", "11", "The LoRA scale must be a number from -10 to 10."],
          ["Images", "11", "Images: 1 to 10."],
        ]
      ) {
        const field = page.getByLabel(label, { exact: true });
        const before = await field.inputValue();
        await field.fill(value);
        await page.getByRole("button", { name: "Generate" }).click();
        await page.locator("#error", { hasText: message }).waitFor();
        await field.fill(before);
      }
      await page.getByLabel("Images").fill("2");
      await page.getByRole("button", { name: "Generate" }).click();
      const figures = page.locator("#gallery figure");
      await figures.nth(1).waitFor();
      // Newest first: image 2 of 2 is on top. Both come from seed 7, with the adapter.
      const metas = await figures.locator(".meta").allInnerTexts();
      assert.match(metas[0], /^256x256 · seed 7, image 2 of 2 · LoRA style · /);
      assert.match(metas[1], /^256x256 · seed 7, image 1 of 2 · LoRA style · /);
      // The picker sent model: "style": the same request through the API gives the same bytes.
      const api = await fetch(`${server.url}/v1/images/generations`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({
          model: "style",
          prompt: "a red cube",
          size: "256x256",
          n: 2,
          seed: 7,
          num_inference_steps: 2,
          guidance_scale: 7.5,
        }),
      }).then((r) => r.json());
      assert.deepEqual(await galleryBytes(page), Uint8Array.fromBase64(api.data[1].b64_json));

      const copyCurl = figures.first().getByRole("button", { name: "Copy as curl" });
      await copyCurl.click();
      await figures.first().getByRole("button", { name: "Copied" }).waitFor();
      await page.getByRole("status").filter({ hasText: "Copied to the clipboard (curl)." })
        .waitFor();
      const command = await clipboardText(page);
      assert.match(command, /"model":"style"/);
      assert.match(command, /\.data\[1\]\.b64_json/);
      await copyCurl.waitFor(); // the label comes back

      await assertAccessible(page, ["#generate"]);

      // Reuse puts an image's settings back after the form was changed.
      await page.getByLabel("Prompt", { exact: true }).fill("something else");
      await lora.selectOption("");
      await page.getByLabel("random").check();
      await page.getByLabel("Images").fill("1");
      await figures.nth(1).getByRole("button", { name: "Reuse" }).click();
      assert.equal(await page.getByLabel("Prompt", { exact: true }).inputValue(), "a red cube");
      assert.equal(await lora.inputValue(), "style");
      assert.equal(await page.getByLabel("Seed").inputValue(), "7");
      assert.equal(await page.getByLabel("random").isChecked(), false);
      assert.equal(await page.getByLabel("Images").inputValue(), "2");

      // Settings and gallery are there on the next visit.
      await page.getByLabel("Steps").fill("3");
      await page.goto(`${server.url}/`); // a new visit: no form restoration by the browser
      await page.locator('#size option[value="256x256"]').waitFor({ state: "attached" });
      await page.waitForFunction(`document.getElementById("steps").value === "3"`);
      assert.equal(await page.getByLabel("Prompt", { exact: true }).inputValue(), "a red cube");
      assert.equal(await page.getByLabel("Steps").inputValue(), "3");
      assert.equal(await lora.inputValue(), "style");
      assert.equal(await page.getByLabel("Size").inputValue(), "256x256");
      assert.deepEqual(await figures.locator(".meta").allInnerTexts(), metas);
      assert.deepEqual(await galleryBytes(page), Uint8Array.fromBase64(api.data[1].b64_json));

      // Clear gallery and Reset settings forget them, also for the next visit.
      await page.getByRole("button", { name: "Clear gallery" }).click();
      await page.getByText("Images you make on this page appear here.").waitFor();
      await page.getByRole("button", { name: "Reset settings" }).click();
      assert.equal(await page.getByLabel("Prompt", { exact: true }).inputValue(), "");
      assert.equal(await page.getByLabel("Steps").inputValue(), "50");
      await page.goto(`${server.url}/`); // a new visit: no form restoration by the browser
      await page.locator('#size option[value="256x256"]').waitFor({ state: "attached" });
      await page.getByRole("button", { name: "Generate" }).and(page.locator(":enabled")).waitFor();
      assert.equal(await figures.count(), 0);
      assert.equal(await page.getByLabel("Prompt", { exact: true }).inputValue(), "");
      assert.equal(await lora.inputValue(), "");
      assert.deepEqual(outside, []);
    });
  } finally {
    await server.stop();
  }
});

test("playground: on a phone-sized screen Generate scrolls to the output", async () => {
  const server = await startServer(["--model", SD15, "--device", "cpu"]);
  try {
    await withBrowser(async (context, outside) => {
      const page = await openPlayground(context, server);
      await page.getByLabel("Prompt", { exact: true }).fill("a small screen");
      await page.getByLabel("Size").selectOption("256x256");
      await page.getByLabel("Steps").fill("2");
      await page.getByRole("button", { name: "Generate" }).click();
      const figure = page.locator("#gallery figure");
      await figure.waitFor();
      const box = await figure.boundingBox();
      assert.ok(box && box.y >= 0 && box.y < 844 - 100, JSON.stringify(box));
      assert.deepEqual(outside, []);
    }, { width: 390, height: 844 });
  } finally {
    await server.stop();
  }
});

test("/docs renders offline and Try it out on POST /v1/images/generations gets a 200", async () => {
  const server = await startServer(["--model", SD15, "--device", "cpu"]);
  try {
    await withBrowser(async (context, outside) => {
      const page = await context.newPage();
      await page.goto(`${server.url}/docs`);
      const operation = page.locator("#operations-default-createImage");
      await operation.waitFor();
      assert.ok(await page.getByText("/v1/chat/completions").first().isVisible());
      if (SCREENSHOTS) await page.screenshot({ path: "docs/api-docs.png" });
      await operation.locator(".opblock-summary").click();
      await operation.getByRole("button", { name: "Try it out" }).click();
      await operation.locator("textarea.body-param__text").fill(
        JSON.stringify({ prompt: "a dragon", size: "256x256", seed: 42, num_inference_steps: 4 }),
      );
      const sent = page.waitForRequest((r) => r.method() === "POST");
      await operation.getByRole("button", { name: "Execute" }).click();
      await operation.locator(".live-responses-table .response-col_status", { hasText: "200" })
        .waitFor();
      assert.equal((await sent).url(), `${server.url}/v1/images/generations`);
      assert.deepEqual(outside, []);
    });
  } finally {
    await server.stop();
  }
});

Deno.test("CORS is off by default; with --allowed-origins a preflight is answered before auth", async () => {
  const plain = await startServer(["--model", SD15, "--device", "cpu", "--api-key", "k"]);
  const open = await startServer([
    "--model",
    SD15,
    "--device",
    "cpu",
    "--api-key",
    "k",
    "--allowed-origins",
    '["http://app.example"]',
  ]);
  try {
    const preflight = (server: TestServer) =>
      fetch(`${server.url}/v1/images/generations`, {
        method: "OPTIONS",
        headers: {
          origin: "http://app.example",
          "access-control-request-method": "POST",
          "access-control-request-headers": "authorization, content-type",
        },
      });
    const off = await preflight(plain);
    await off.body?.cancel();
    assert.equal(off.headers.get("access-control-allow-origin"), null);
    const on = await preflight(open);
    await on.body?.cancel();
    assert.equal(on.status, 204);
    assert.equal(on.headers.get("access-control-allow-origin"), "http://app.example");
    assert.match(on.headers.get("access-control-allow-headers") ?? "", /authorization/i);
    const other = await fetch(`${open.url}/v1/models`, {
      headers: { origin: "http://evil.example", authorization: "Bearer k" },
    });
    await other.body?.cancel();
    assert.equal(other.headers.get("access-control-allow-origin"), null);
  } finally {
    await plain.stop();
    await open.stop();
  }
});
