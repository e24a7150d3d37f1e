import assert from "node:assert/strict";
import { fromFloat16, toFloat16 } from "../backends/float16.ts";
import { ConvertError } from "../errors.ts";
import {
  parseSafetensors,
  type SafetensorsTensor,
  serializeSafetensors,
  tensorToFloat32,
} from "../lora/safetensors.ts";
import { QwenTokenizer } from "../tokenizers/qwen_tokenizer.ts";
import { convert } from "./convert.ts";
import { createScheduler } from "../schedulers/mod.ts";
import { clipTextConfig, unetConfig, vaeConfig } from "./configs.ts";
import {
  detectFamily,
  SINGLE_FILE_LAYOUTS,
  singleFileLayout,
  splitSingleFile,
} from "./single_file.ts";
import { readSafetensors, SafetensorsWeights } from "./weights.ts";

const DATA = new URL("../../fixtures/reference/data/", import.meta.url).pathname;
const MAIN = new URL("./main.ts", import.meta.url).pathname;

/** Every file below `dir`, path → bytes. */
async function readTree(dir: string, prefix = ""): Promise<Map<string, Uint8Array>> {
  const files = new Map<string, Uint8Array>();
  for await (const e of Deno.readDir(`${dir}/${prefix}`)) {
    const path = prefix ? `${prefix}/${e.name}` : e.name;
    if (e.isDirectory) { for (const [p, b] of await readTree(dir, path)) files.set(p, b); }
    else files.set(path, await Deno.readFile(`${dir}/${path}`));
  }
  return files;
}

/** Copies the folder `from` to `to`. */
async function copyTree(from: string, to: string) {
  for (const [path, bytes] of await readTree(from)) {
    await Deno.mkdir(`${to}/${path}`.replace(/\/[^/]+$/, ""), { recursive: true });
    await Deno.writeFile(`${to}/${path}`, bytes);
  }
}

/** Whether two byte arrays are equal (an assertion's diff of large arrays would not fit memory). */
function sameBytes(a: Uint8Array | undefined, b: Uint8Array | undefined): boolean {
  return a !== undefined && b !== undefined && a.length === b.length &&
    a.every((x, i) => x === b[i]);
}

async function withTemp(fn: (dir: string) => Promise<void>) {
  const dir = await Deno.makeTempDir();
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("the single-file SD 1.x checkpoint converts to the same files as its diffusers folder", async () => {
  await withTemp(async (tmp) => {
    await convert(`${DATA}/sd15`, `${tmp}/folder`);
    const folder = await readTree(`${tmp}/folder`);
    assert.ok(folder.has("unet/model.onnx") && folder.has("vae_encoder/model.onnx"));
    // As published files also are: the text encoder without transformers' `text_model.` level,
    // and the training run's noise schedule and EMA state beside the weights.
    const { tensors } = parseSafetensors(await Deno.readFile(`${DATA}/sd15.safetensors`));
    const older: Record<string, { shape: number[]; data: Float32Array }> = {};
    for (const [key, t] of tensors) {
      older[
        key.replace("cond_stage_model.transformer.text_model.", "cond_stage_model.transformer.")
      ] = { shape: t.shape, data: tensorToFloat32(t) };
    }
    older.alphas_cumprod = { shape: [1000], data: new Float32Array(1000).fill(0.5) };
    older["model_ema.decay"] = { shape: [], data: Float32Array.of(0.9999) };
    await Deno.writeFile(`${tmp}/older.safetensors`, serializeSafetensors(older));
    for (const file of [`${DATA}/sd15.safetensors`, `${tmp}/older.safetensors`]) {
      const out = `${tmp}/single-${file.length}`;
      await convert(file, out, { config: `${DATA}/sd15` });
      const single = await readTree(out);
      assert.deepEqual([...single.keys()].sort(), [...folder.keys()].sort());
      for (const [path, bytes] of folder) assert.ok(sameBytes(single.get(path), bytes), path);
    }
  });
});

Deno.test("the single-file SDXL (SGM) checkpoint converts to the same files as its diffusers folder", async () => {
  await withTemp(async (tmp) => {
    await convert(`${DATA}/sdxl`, `${tmp}/folder`);
    const folder = await readTree(`${tmp}/folder`);
    assert.ok(folder.has("text_encoder_2/model.onnx") && folder.has("tokenizer_2/vocab.json"));
    // As the published SDXL base file also is: OpenCLIP's logit_scale beside the text tower.
    const { tensors } = parseSafetensors(await Deno.readFile(`${DATA}/sdxl.safetensors`));
    const published: Record<string, { shape: number[]; data: Float32Array }> = {};
    for (const [key, t] of tensors) published[key] = { shape: t.shape, data: tensorToFloat32(t) };
    published["conditioner.embedders.1.model.logit_scale"] = {
      shape: [],
      data: Float32Array.of(4.6052),
    };
    await Deno.writeFile(`${tmp}/published.safetensors`, serializeSafetensors(published));
    for (const file of [`${DATA}/sdxl.safetensors`, `${tmp}/published.safetensors`]) {
      const out = `${tmp}/single-${file.length}`;
      await convert(file, out, { config: `${DATA}/sdxl` });
      const single = await readTree(out);
      assert.deepEqual([...single.keys()].sort(), [...folder.keys()].sort());
      for (const [path, bytes] of folder) assert.ok(sameBytes(single.get(path), bytes), path);
    }
    await assert.rejects(
      convert(`${DATA}/sdxl.safetensors`, `${tmp}/x`, { config: `${DATA}/sd15` }),
      /a single-file SDXL checkpoint needs a StableDiffusionXLPipeline folder, not "StableDiffusionPipeline"/,
    );
  });
});

Deno.test("the single-file SD 2.x checkpoint (OpenCLIP text tower) converts to the same files as its diffusers folder", async () => {
  await withTemp(async (tmp) => {
    await convert(`${DATA}/sd2`, `${tmp}/folder`);
    const folder = await readTree(`${tmp}/folder`);
    // As published SD 2.x files are: OpenCLIP's whole tower, one layer more than diffusers' text
    // encoder (SD 2.x reads the penultimate layer), its text_projection and logit_scale; all
    // dropped, as diffusers' single-file loader drops them.
    const { tensors } = parseSafetensors(await Deno.readFile(`${DATA}/sd2.safetensors`));
    const published: Record<string, { shape: number[]; data: Float32Array }> = {};
    for (const [key, t] of tensors) {
      published[key] = { shape: t.shape, data: tensorToFloat32(t) };
      const last = key.match(/^cond_stage_model\.model\.transformer\.resblocks\.2\.(.+)$/);
      if (last) {
        published[`cond_stage_model.model.transformer.resblocks.3.${last[1]}`] = {
          shape: t.shape,
          data: tensorToFloat32(t).map((x) => x + 1),
        };
      }
    }
    published["cond_stage_model.model.text_projection"] = {
      shape: [32, 32],
      data: new Float32Array(32 * 32).fill(0.5),
    };
    published["cond_stage_model.model.logit_scale"] = { shape: [], data: Float32Array.of(4.6) };
    await Deno.writeFile(`${tmp}/published.safetensors`, serializeSafetensors(published));
    await convert(`${tmp}/published.safetensors`, `${tmp}/single`, { config: `${DATA}/sd2` });
    const single = await readTree(`${tmp}/single`);
    assert.deepEqual([...single.keys()].sort(), [...folder.keys()].sort());
    for (const [path, bytes] of folder) assert.ok(sameBytes(single.get(path), bytes), path);
  });
});

/**
 * Checks each component the single file `name` splits into against diffusers' own mapping
 * (`<name>.keymap.json`: single-file key → folder file and key), tensor by tensor; every tensor of
 * every component must be taken. Returns how many were compared.
 */
async function checkKeymap(
  name: string,
  shape: Parameters<typeof splitSingleFile>[3],
  layoutName?: string,
): Promise<number> {
  const keymap: Record<string, { file: string; key?: string; keys?: string[] }> = JSON.parse(
    await Deno.readTextFile(`${DATA}/${name}.keymap.json`),
  );
  const tensors = await readSafetensors(`${DATA}/${name}.safetensors`);
  const layout = singleFileLayout([...tensors.keys()]);
  if (layoutName) assert.equal(layout.name, layoutName);
  const parts = splitSingleFile(`${name}.safetensors`, tensors, layout, shape);
  const files = new Map<string, Map<string, SafetensorsTensor>>();
  let checked = 0;
  for (const [single, entry] of Object.entries(keymap)) {
    const component = entry.file.split("/")[1] as keyof typeof parts;
    if (!files.has(entry.file)) {
      files.set(entry.file, parseSafetensors(await Deno.readFile(`${DATA}/${entry.file}`)).tensors);
    }
    for (const key of entry.keys ?? [entry.key!]) {
      const expected = files.get(entry.file)!.get(key)!;
      const taken = parts[component]!.take(key, expected.shape);
      assert.ok(
        sameBytes(
          new Uint8Array(taken.buffer, taken.byteOffset, taken.byteLength),
          new Uint8Array(tensorToFloat32(expected).buffer),
        ),
        `${key} (from ${single})`,
      );
      checked++;
    }
  }
  for (const weights of Object.values(parts)) assert.deepEqual(weights.unused(), []);
  return checked;
}

Deno.test("the SD 2.x key mapping agrees with diffusers' own (sd2.keymap.json), tensor by tensor", async () => {
  const checked = await checkKeymap(
    "sd2",
    { unetLayersPerBlock: 2, vaeLevels: 4, textEncoderLayers: 3 },
    "SD 2.x",
  );
  assert.ok(checked > 400, `${checked}`);
});

Deno.test("the SGM key mapping agrees with diffusers' own (sdxl.keymap.json), tensor by tensor", async () => {
  const checked = await checkKeymap("sdxl", { unetLayersPerBlock: 2, vaeLevels: 4 });
  assert.equal(checked, 905);
});

Deno.test("single files with stray tensors, or missing components, are refused by name", async () => {
  await withTemp(async (tmp) => {
    const { tensors } = parseSafetensors(await Deno.readFile(`${DATA}/sd15.safetensors`));
    const edited = (rename: (key: string) => string) => {
      const out: Record<string, { shape: number[]; data: Float32Array }> = {};
      for (const [key, t] of tensors) {
        out[rename(key)] = { shape: t.shape, data: tensorToFloat32(t) };
      }
      return serializeSafetensors(out);
    };
    await Deno.writeFile(
      `${tmp}/stray.safetensors`,
      edited((k) => k.replace("model.diffusion_model.out.2.", "model.diffusion_model.out.7.")),
    );
    await assert.rejects(
      convert(`${tmp}/stray.safetensors`, `${tmp}/x`, { config: `${DATA}/sd15` }),
      /tensor 'model\.diffusion_model\.out\.7\.bias' fits no SD 1\.x unet key/,
    );
    await Deno.writeFile(
      `${tmp}/extra.safetensors`,
      edited((k) => k.replace("first_stage_model.", "second_stage_model.")),
    );
    await assert.rejects(
      convert(`${tmp}/extra.safetensors`, `${tmp}/x`, { config: `${DATA}/sd15` }),
      /no vae tensors/,
    );
    assert.deepEqual([...Deno.readDirSync(tmp)].map((e) => e.name).sort(), [
      "extra.safetensors",
      "stray.safetensors",
    ]);
  });
});

Deno.test("a component folder becomes its model-folder component(s) inside --out", async () => {
  await withTemp(async (tmp) => {
    const written = await convert(`${DATA}/sd15/vae`, `${tmp}/model`);
    assert.deepEqual(
      written.filter((p) => p.endsWith(".onnx")).sort(),
      ["vae_decoder/model.onnx", "vae_encoder/model.onnx"],
    );
    assert.deepEqual(
      [...Deno.readDirSync(`${tmp}/model`)].map((e) => e.name).sort(),
      ["vae_decoder", "vae_encoder"],
    );
    // Converting it again would overwrite: refused.
    await assert.rejects(convert(`${DATA}/sd15/vae`, `${tmp}/model`), /already has vae_decoder/);
  });
});

/** A copy of a tiny folder (SD 1.x's), changed by `edit`, converted: the one-line refusal. */
async function refusal(
  edit: (src: string) => Promise<void>,
  family = "sd15",
): Promise<string> {
  let message = "";
  await withTemp(async (tmp) => {
    await copyTree(`${DATA}/${family}`, `${tmp}/${family}`);
    await edit(`${tmp}/${family}`);
    await Deno.mkdir(`${tmp}/out`);
    const error = await convert(`${tmp}/${family}`, `${tmp}/out/model`).then(
      () => assert.fail("converted"),
      (e) => e,
    );
    assert.ok(error instanceof ConvertError, String(error?.stack));
    message = error.message;
    assert.doesNotMatch(message, /\n/);
    // Nothing half-written: no model folder, no temporary folder.
    assert.deepEqual([...Deno.readDirSync(`${tmp}/out`)], []);
  });
  return message;
}

/** Edits the JSON file `path` (written to `to`, by default in place). */
const editJson = async (
  path: string,
  edit: (v: Record<string, unknown>) => void,
  to = path,
) => {
  const value = JSON.parse(await Deno.readTextFile(path));
  edit(value);
  await Deno.writeTextFile(to, JSON.stringify(value));
};

Deno.test("bad input: one clear line, nothing written", async (t) => {
  const cases: [string, (src: string) => Promise<void>, RegExp][] = [
    [
      "a missing component",
      (src) => Deno.remove(`${src}/unet`, { recursive: true }),
      /component unet\/ is missing/,
    ],
    [
      "a shape that does not fit the config",
      (src) => editJson(`${src}/unet/config.json`, (c) => c.cross_attention_dim = 48),
      /attn2\.to_k\.weight' has shape \[8,32\], but the config needs \[8,48\]$/,
    ],
    [
      "weights of a larger network than the config",
      (src) => editJson(`${src}/vae/config.json`, (c) => c.mid_block_add_attention = false),
      /tensor\(s\) the config has no place for/,
    ],
    [
      "an unknown component class",
      (src) => editJson(`${src}/unet/config.json`, (c) => c._class_name = "UNet3DConditionModel"),
      /component class "UNet3DConditionModel" is not supported/,
    ],
    [
      "an unknown config field",
      (src) => editJson(`${src}/unet/config.json`, (c) => c.fancy_new_block = true),
      /unknown config field "fancy_new_block"/,
    ],
    [
      "an architecture the builder does not build",
      (src) => editJson(`${src}/unet/config.json`, (c) => c.class_embed_type = "timestep"),
      /class_embed_type = "timestep" is not supported/,
    ],
    [
      "an unknown pipeline class",
      (src) => editJson(`${src}/model_index.json`, (c) => c._class_name = "FancyPipeline"),
      /pipeline class "FancyPipeline" is not converted/,
    ],
    [
      "a truncated safetensors file",
      async (src) => {
        const path = `${src}/vae/diffusion_pytorch_model.safetensors`;
        const bytes = await Deno.readFile(path);
        await Deno.writeFile(path, bytes.subarray(0, bytes.length - 100));
      },
      /not a valid safetensors file: tensor '.*' has data_offsets .* outside/,
    ],
    [
      "a safetensors header that lies about its length",
      async (src) => {
        const path = `${src}/text_encoder/model.safetensors`;
        const bytes = await Deno.readFile(path);
        new DataView(bytes.buffer).setBigUint64(0, 1n << 40n, true);
        await Deno.writeFile(path, bytes);
      },
      /its header claims 1099511627776 bytes/,
    ],
    [
      "a pickled checkpoint",
      async (src) => {
        await Deno.remove(`${src}/unet/diffusion_pytorch_model.safetensors`);
        await Deno.writeFile(`${src}/unet/diffusion_pytorch_model.bin`, Uint8Array.of(0x80, 2));
      },
      /diffusion_pytorch_model\.bin is a pickled PyTorch checkpoint: refused/,
    ],
  ];
  for (const [name, edit, expected] of cases) {
    await t.step(name, async () => assert.match(await refusal(edit), expected));
  }
});

Deno.test("Z-Image: the folder becomes a served model folder; bad input is one clear line, nothing written", async (t) => {
  await t.step("converted folder", async () => {
    await withTemp(async (tmp) => {
      const written = await convert(`${DATA}/zimage`, `${tmp}/model`);
      assert.deepEqual(written.filter((p) => p.endsWith("model.onnx")).sort(), [
        "text_encoder/model.onnx",
        "transformer/model.onnx",
        "vae_decoder/model.onnx",
        "vae_encoder/model.onnx",
      ]);
      const index = JSON.parse(await Deno.readTextFile(`${tmp}/model/model_index.json`));
      assert.equal(index._class_name, "ZImagePipeline");
      assert.deepEqual(index.vae_decoder, ["diffusers", "AutoencoderKL"]);
      // The slow tokenizer's files, and the tokenizer.json built from them.
      for (const file of ["vocab.json", "merges.txt", "chat_template.jinja", "tokenizer.json"]) {
        assert.ok(written.includes(`tokenizer/${file}`), file);
      }
      // It tokenizes the chat-templated prompt to the ids diffusers' pipeline fed its encoder.
      const manifest = JSON.parse(await Deno.readTextFile(`${DATA}/zimage.manifest.json`));
      const { input_ids, attention_mask } = manifest.components.text_encoder.inputs;
      const real = attention_mask.value[0].filter((m: number) => m === 1).length;
      const tokenizer = await QwenTokenizer.load(`${tmp}/model/tokenizer`);
      assert.deepEqual(
        tokenizer.encode("<|im_start|>user\na red circle<|im_end|>\n<|im_start|>assistant\n"),
        input_ids.value[0].slice(0, real),
      );
      assert.equal(tokenizer.padId, input_ids.value[0][real]);
    });
  });
  await t.step("a Qwen3ForCausalLM checkpoint converts to the same text encoder", async () => {
    await withTemp(async (tmp) => {
      const src = `${DATA}/zimage/text_encoder`;
      await Deno.mkdir(`${tmp}/text_encoder`);
      await editJson(
        `${src}/config.json`,
        (c) => c.architectures = ["Qwen3ForCausalLM"],
        `${tmp}/text_encoder/config.json`,
      );
      const { tensors } = parseSafetensors(await Deno.readFile(`${src}/model.safetensors`));
      const causal: Record<string, { shape: number[]; data: Float32Array }> = {};
      for (const [key, t] of tensors) {
        causal[`model.${key}`] = { shape: t.shape, data: tensorToFloat32(t) };
      }
      causal["lm_head.weight"] = causal["model.embed_tokens.weight"];
      await Deno.writeFile(`${tmp}/text_encoder/model.safetensors`, serializeSafetensors(causal));
      await convert(src, `${tmp}/base`);
      await convert(`${tmp}/text_encoder`, `${tmp}/causal`);
      for (const file of ["model.onnx", "model.onnx_data"]) {
        assert.ok(
          sameBytes(
            await Deno.readFile(`${tmp}/causal/text_encoder/${file}`),
            await Deno.readFile(`${tmp}/base/text_encoder/${file}`),
          ),
          file,
        );
      }
    });
  });
  const cases: [string, (src: string) => Promise<void>, RegExp][] = [
    [
      "a missing component",
      (src) => Deno.remove(`${src}/transformer`, { recursive: true }),
      /component transformer\/ is missing/,
    ],
    [
      "Z-Image-Omni's SigLIP conditioning",
      (src) => editJson(`${src}/transformer/config.json`, (c) => c.siglip_feat_dim = 64),
      /transformer: siglip_feat_dim = 64 is not supported by the converter$/,
    ],
    [
      "fewer key/value heads than query heads",
      (src) => editJson(`${src}/transformer/config.json`, (c) => c.n_kv_heads = 1),
      /n_kv_heads 1 differs from n_heads 2/,
    ],
    [
      "RoPE axes that do not cover a head",
      (src) => editJson(`${src}/transformer/config.json`, (c) => c.axes_dims = [4, 6, 4]),
      /axes_dims \[4,6,4\] .* do not cover the head size 16/,
    ],
    [
      "a caption width the weights do not have",
      (src) => editJson(`${src}/transformer/config.json`, (c) => c.cap_feat_dim = 48),
      /tensor 'cap_embedder\.0\.weight' has shape \[32\], but the config needs \[48\]$/,
    ],
    [
      "a text encoder with sliding-window attention",
      (src) => editJson(`${src}/text_encoder/config.json`, (c) => c.use_sliding_window = true),
      /use_sliding_window = true is not supported by the converter$/,
    ],
    [
      "a text encoder that is not Qwen3",
      (src) => editJson(`${src}/text_encoder/config.json`, (c) => c.model_type = "qwen2"),
      /model_type "qwen2" is not a Qwen3 text model/,
    ],
    [
      "a text encoder config with fewer layers than its weights",
      (src) => editJson(`${src}/text_encoder/config.json`, (c) => c.num_hidden_layers = 2),
      /tensor\(s\) the config has no place for \(first: 'layers\.2\./,
    ],
    [
      "a tokenizer without vocabulary",
      (src) => Deno.remove(`${src}/tokenizer/vocab.json`),
      /tokenizer: no tokenizer\.json, and no vocab\.json to build it from/,
    ],
  ];
  for (const [name, edit, expected] of cases) {
    await t.step(name, async () => assert.match(await refusal(edit, "zimage"), expected));
  }
});

Deno.test("deno task convert: exit 0 with a summary, exit 1 with one line on bad input", async () => {
  await withTemp(async (tmp) => {
    const run = async (...args: string[]) => {
      const out = await new Deno.Command(Deno.execPath(), {
        args: ["run", "--allow-read", "--allow-write", MAIN, ...args],
      }).output();
      return {
        code: out.code,
        stdout: new TextDecoder().decode(out.stdout),
        stderr: new TextDecoder().decode(out.stderr),
      };
    };
    const ok = await run(`${DATA}/sd15`, "--out", `${tmp}/model`);
    assert.equal(ok.code, 0, ok.stderr);
    assert.match(ok.stdout, /text_encoder, unet, vae_decoder, vae_encoder/);
    await Deno.writeFile(`${tmp}/model.ckpt`, Uint8Array.of(0x80, 2, 0x7d));
    for (
      const [args, expected] of [
        [[`${tmp}/model.ckpt`, "--out", `${tmp}/x`], /pickled PyTorch checkpoint: refused/],
        [[`${DATA}/sd15.safetensors`, "--out", `${tmp}/x`], /cannot tell its model family/],
        [[`${DATA}/sd15`, "--out", `${tmp}/model`], /already exists/],
        [[`${DATA}/sd15`, "--out", `${tmp}/x`, "--dtype", "q3"], /--dtype q3 is not supported/],
        [[`${tmp}/nothing`, "--out", `${tmp}/x`], /no such file or folder/],
      ] as [string[], RegExp][]
    ) {
      const bad = await run(...args);
      assert.equal(bad.code, 1, args.join(" "));
      assert.match(bad.stderr, expected);
      assert.equal(bad.stderr.trim().split("\n").length, 1, bad.stderr);
    }
    assert.deepEqual([...Deno.readDirSync(tmp)].map((e) => e.name).sort(), ["model", "model.ckpt"]);
  });
});

/** A safetensors file of 16-bit tensors (`bits` per tensor), as torch writes fp16/bf16. */
function safetensors16(dtype: "F16" | "BF16", tensors: Map<string, [number[], Uint16Array]>) {
  const header: Record<string, unknown> = {};
  let offset = 0;
  for (const [name, [shape, bits]] of tensors) {
    header[name] = { dtype, shape, data_offsets: [offset, offset + bits.byteLength] };
    offset += bits.byteLength;
  }
  const head = new TextEncoder().encode(JSON.stringify(header));
  const out = new Uint8Array(8 + head.length + offset);
  new DataView(out.buffer).setBigUint64(0, BigInt(head.length), true);
  out.set(head, 8);
  let at = 8 + head.length;
  for (const [, bits] of tensors.values()) {
    out.set(new Uint8Array(bits.buffer), at);
    at += bits.byteLength;
  }
  return out;
}

Deno.test("fp16 and bf16 weights, one file or sharded, convert exactly to float32 and float16", async () => {
  const { tensors } = parseSafetensors(
    await Deno.readFile(`${DATA}/sd15/text_encoder/model.safetensors`),
  );
  const config = await Deno.readTextFile(`${DATA}/sd15/text_encoder/config.json`);
  await withTemp(async (tmp) => {
    const folder = async (name: string, files: Record<string, Uint8Array>, outDtype: string) => {
      await Deno.mkdir(`${tmp}/${name}`);
      await Deno.writeTextFile(`${tmp}/${name}/config.json`, config);
      for (const [file, bytes] of Object.entries(files)) {
        await Deno.writeFile(`${tmp}/${name}/${file}`, bytes);
      }
      await convert(`${tmp}/${name}`, `${tmp}/out-${name}`, { dtype: outDtype });
      // Small tensors stay inline in model.onnx, larger ones go to model.onnx_data.
      return await Promise.all(
        ["model.onnx", "model.onnx_data"].map((f) =>
          Deno.readFile(`${tmp}/out-${name}/text_encoder/${f}`)
        ),
      );
    };
    for (const dtype of ["F16", "BF16"] as const) {
      // Each tensor rounded to the 16-bit type, stored as float32 and as the 16-bit bits.
      const exact: Record<string, { shape: number[]; data: Float32Array }> = {};
      const half = new Map<string, [number[], Uint16Array]>();
      for (const [name, t] of tensors) {
        const values = tensorToFloat32(t);
        const bits = dtype === "F16"
          ? new Uint16Array(toFloat16(values).buffer)
          : Uint16Array.from(new Uint32Array(values.buffer), (b) => b >>> 16);
        half.set(name, [t.shape, bits]);
        exact[name] = {
          shape: t.shape,
          data: dtype === "F16"
            ? fromFloat16(new Float16Array(bits.buffer))
            : new Float32Array(Uint32Array.from(bits, (b) => b << 16).buffer),
        };
      }
      const variant = dtype === "F16" ? "fp16" : "bf16";
      const names = [...half.keys()];
      const shards = [names.slice(0, 5), names.slice(5)].map((keys) =>
        new Map(keys.map((k) => [k, half.get(k)!]))
      );
      // To float16 too: narrowed from bf16 in one pass, it must round as from float32.
      for (const out of ["fp32", "fp16"]) {
        const expected = await folder(`f32-${variant}-${out}`, {
          "model.safetensors": serializeSafetensors(exact),
        }, out);
        const same = (got: Uint8Array[]) => got.every((bytes, i) => sameBytes(bytes, expected[i]));
        assert.ok(
          same(
            await folder(`${variant}-${out}`, {
              [`model.${variant}.safetensors`]: safetensors16(dtype, half),
            }, out),
          ),
          `${variant}: one file, ${out}`,
        );
        const weightMap = Object.fromEntries(
          shards.flatMap((s, i) =>
            [...s.keys()].map((k) => [k, `model-0000${i + 1}-of-00002.safetensors`])
          ),
        );
        assert.ok(
          same(
            await folder(`sharded-${variant}-${out}`, {
              [`model.${variant}.safetensors.index.json`]: new TextEncoder().encode(
                JSON.stringify({ metadata: {}, weight_map: weightMap }),
              ),
              "model-00001-of-00002.safetensors": safetensors16(dtype, shards[0]),
              "model-00002-of-00002.safetensors": safetensors16(dtype, shards[1]),
            }, out),
          ),
          `${variant}: sharded, ${out}`,
        );
      }
    }
  });
});

Deno.test("bf16 weights lent encoded are the bytes of take, transposed and rounded to float16", async () => {
  // 300×70 crosses the 256×64 tiles in both directions; the bits are all kinds of values (NaNs,
  // infinities, subnormals, values too large or too small for float16).
  const [rows, cols] = [300, 70];
  const bits = new Uint16Array(rows * cols);
  let state = 12345;
  for (let i = 0; i < bits.length; i++) {
    state ^= state << 13;
    state ^= state >>> 17;
    state ^= state << 5;
    bits[i] = state;
  }
  await withTemp(async (tmp) => {
    await Deno.writeFile(
      `${tmp}/w.safetensors`,
      safetensors16("BF16", new Map([["w", [[rows, cols], bits]]])),
    );
    const weights = new SafetensorsWeights("w", await readSafetensors(`${tmp}/w.safetensors`));
    const values = weights.take("w", [rows, cols]);
    // Moved as bits: a NaN's payload may not survive a float load and store.
    const from = new Uint32Array(values.buffer);
    const transposed = new Float32Array(values.length);
    const to = new Uint32Array(transposed.buffer);
    for (let r = 0; r < rows; r++) {
      for (let c = 0; c < cols; c++) to[c * rows + r] = from[r * cols + c];
    }
    for (const transpose of [false, true]) {
      const floats = transpose ? transposed : values;
      for (const half of [false, true]) {
        const expected = half ? Float16Array.from(floats) : floats;
        assert.ok(
          sameBytes(
            weights.lendEncoded("w", [rows, cols], { transpose, half }),
            new Uint8Array(expected.buffer),
          ),
          `transpose ${transpose}, half ${half}`,
        );
      }
    }
  });
});

Deno.test("the family of a single file is told from its keys as diffusers' loader tells it; others are one line", () => {
  const UNET = "model.diffusion_model.";
  const file = (entries: Record<string, number[]>) =>
    new Map(Object.entries(entries).map(([k, shape]) => [k, { shape }]));
  const sd = {
    [`${UNET}input_blocks.0.0.weight`]: [320, 4, 3, 3],
    [`${UNET}output_blocks.11.0.skip_connection.weight`]: [320, 640, 1, 1],
  };
  const clip = { "cond_stage_model.transformer.text_model.final_layer_norm.weight": [768] };
  const toK = (width: number) => ({
    [`${UNET}input_blocks.2.1.transformer_blocks.0.attn2.to_k.weight`]: [320, width],
  });
  assert.equal(detectFamily("a", file({ ...sd, ...toK(768), ...clip })), "sd1");
  assert.equal(
    detectFamily("a", file({ ...sd, ...toK(1024), "cond_stage_model.model.ln_final.bias": [1] })),
    "sd2",
  );
  const xl = "conditioner.embedders.1.model.transformer.resblocks.9.mlp.c_proj.bias";
  assert.equal(
    detectFamily("a", file({ [`${UNET}input_blocks.0.0.weight`]: [320, 4], [xl]: [1] })),
    "sdxl",
  );
  const refused: [Record<string, number[]>, RegExp][] = [
    [{ ...sd, [`${UNET}input_blocks.0.0.weight`]: [320, 9, 3, 3] }, /a UNet of 9 input channels/],
    [
      { "conditioner.embedders.0.model.transformer.resblocks.9.mlp.c_proj.bias": [1] },
      /SDXL refiner/,
    ],
    [{ [`${UNET}input_blocks.10.0.skip_connection.bias`]: [1] }, /upscaler/],
    // The UNet of SD 1.x without its text encoder, or a smaller UNet: not guessed.
    [sd, /cannot tell its model family/],
    [{ ...clip, [`${UNET}output_blocks.8.0.skip_connection.weight`]: [1] }, /cannot tell/],
  ];
  for (const [entries, expected] of refused) {
    assert.throws(() => detectFamily("x.safetensors", file(entries)), (e: Error) => {
      assert.ok(e instanceof ConvertError);
      assert.match(e.message, expected);
      assert.equal(e.message.split("\n").length, 1);
      return true;
    });
  }
});

Deno.test("each family's known configs are ones the converter and the server's scheduler accept", async () => {
  const known = new URL("./known_configs/", import.meta.url).pathname;
  const read = async (path: string) => JSON.parse(await Deno.readTextFile(`${known}${path}`));
  const expected = {
    sd1: { cross: 768, text: [768, 12], scheduler: "EulerDiscreteScheduler" },
    sd2: { cross: 1024, text: [1024, 23], scheduler: "DDIMScheduler" },
    sdxl: { cross: 2048, text: [768, 12], scheduler: "EulerDiscreteScheduler" },
  };
  for (const [family, want] of Object.entries(expected)) {
    const index = await read(`${family}/model_index.json`);
    assert.equal(index._class_name, SINGLE_FILE_LAYOUTS[family as "sd1"].served.pipelineClasses[0]);
    const unet = unetConfig(family, await read(`${family}/unet/config.json`));
    assert.equal(unet.crossAttentionDim, want.cross);
    vaeConfig(family, await read(`${family}/vae/config.json`));
    const text = clipTextConfig(family, await read(`${family}/text_encoder/config.json`));
    assert.deepEqual([text.hiddenSize, text.layers, text.vocabSize], [...want.text, 49408]);
    const scheduler = await read(`${family}/scheduler/scheduler_config.json`);
    assert.equal(createScheduler(scheduler).name, want.scheduler);
    assert.equal(createScheduler(scheduler).setTimesteps(4).timesteps.length, 4);
  }
  const bigG = clipTextConfig("sdxl", await read("sdxl/text_encoder_2/config.json"), true);
  assert.deepEqual([bigG.hiddenSize, bigG.layers, bigG.projectionDim], [1280, 32, 1280]);
});
