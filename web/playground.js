// @ts-check
/// <reference lib="dom" />
/// <reference lib="dom.iterable" />
/// <reference lib="dom.asynciterable" />
/**
 * The playground: a form for one generation request (with a LoRA picker fed by `/v1/models`),
 * streamed with previews and per-step progress, cancellable (button or Escape), with a gallery
 * of results that, like the form's settings, is kept in this browser (store.js); each image can
 * be reused and copied as curl, Python or openai SDK code. With an image loaded in the edit mode
 * (edit.js), the same form edits it through `/v1/images/edits`; "Edit this" loads a gallery image.
 * Plain browser APIs only; served by the denoise server itself.
 */
import { editForm, editing, editSummary, loadEditImage, setEditable, wireEdit } from "./edit.js";
import {
  clearImages,
  forgetSettings,
  loadSettings,
  savedImages,
  saveImage,
  saveSettings,
} from "./store.js";

/** @typedef {import("./store.js").GalleryImage} GalleryImage */

const KEY_STORAGE = "denoise-api-key";
/** The form fields kept across reloads, by element id. */
const SETTINGS = [
  "prompt",
  "negative",
  "lora",
  "lora-scale",
  "size",
  "width",
  "height",
  "steps",
  "guidance",
  "true-cfg",
  "seed",
  "random-seed",
  "n",
  "format",
  "previews",
];
/** Below this width the form and the output stack, so the output is scrolled to on Generate. */
const NARROW = "(max-width: 800px)";
const SQUARE_SIDES = [256, 384, 512, 768, 1024, 1536, 2048];

/** @param {string} id */
const $ = (id) => /** @type {HTMLElement} */ (document.getElementById(id));
/** @param {string} id */
const input = (id) => /** @type {HTMLInputElement} */ ($(id));

/**
 * @typedef {{ id: string, parent?: string | null, family?: string, size_multiple?: number,
 *   max_image_pixels?: number, max_edit_images?: number,
 *   defaults?: { size: string, num_inference_steps: number,
 *   guidance_scale: number, true_cfg_scale?: number } }} Model
 */

/** @type {{ model?: Model, apiKey: string | null, controller?: AbortController }} */
const state = { apiKey: sessionStorage.getItem(KEY_STORAGE) };

/**
 * Asks for an API key (the server answered 401); true when one was given.
 * @param {boolean} refused the server refused the key that was sent
 */
function askForKey(refused) {
  const dialog = /** @type {HTMLDialogElement} */ ($("key-dialog"));
  input("api-key").value = "";
  $("key-refused").hidden = !refused;
  dialog.showModal();
  return new Promise((resolve) => {
    dialog.addEventListener("close", () => {
      const key = input("api-key").value.trim();
      if (dialog.returnValue === "ok" && key) {
        state.apiKey = key;
        sessionStorage.setItem(KEY_STORAGE, key);
        resolve(true);
      } else resolve(false);
    }, { once: true });
  });
}

/**
 * `fetch` with the API key, asking for one when the server requires it.
 * @param {string} path
 * @param {RequestInit} init
 */
async function api(path, init = {}) {
  for (;;) {
    const headers = new Headers(init.headers);
    const sent = state.apiKey;
    if (sent) headers.set("authorization", `Bearer ${sent}`);
    const res = await fetch(path, { ...init, headers });
    if (res.status === 401) {
      if (sent) {
        state.apiKey = null;
        sessionStorage.removeItem(KEY_STORAGE);
      }
      if (await askForKey(sent !== null)) {
        await res.body?.cancel();
        continue;
      }
    }
    return res;
  }
}

/**
 * The server's message from an error response.
 * @param {Response} res
 */
async function errorText(res) {
  try {
    const body = await res.json();
    if (body?.error?.message) return body.error.message;
    if (typeof body?.detail === "string") return body.detail;
    return JSON.stringify(body);
  } catch {
    return `${res.status} ${res.statusText}`;
  }
}

/**
 * What went wrong, from anything thrown (IndexedDB throws DOMExceptions, which are Errors).
 * @param {unknown} e
 */
const reason = (e) => e instanceof Error ? e.message : String(e);

/** @param {string} message */
function showError(message) {
  const el = $("error");
  el.textContent = message;
  el.hidden = !message;
}

/** Polls /health until the model is ready, showing why it is not. */
async function waitUntilReady() {
  const banner = $("status");
  for (;;) {
    try {
      const res = await fetch("/health");
      const body = await res.json();
      if (res.ok) break;
      banner.textContent = body.reason ?? "The server is not ready.";
    } catch {
      banner.textContent = "Cannot reach the server; retrying…";
    }
    banner.hidden = false;
    input("generate").disabled = true;
    await new Promise((r) => setTimeout(r, 2000));
  }
  banner.hidden = true;
  input("generate").disabled = false;
}

/**
 * Reads the served model (the entry without a `parent`) and its LoRA adapters (the entries whose
 * `parent` it is), and fills the form with its sizes, defaults and adapters.
 */
async function loadModel() {
  const res = await api("/v1/models");
  if (!res.ok) throw new Error(await errorText(res));
  /** @type {Model[]} */
  const models = (await res.json()).data;
  const model = models.find((m) => !m.parent) ?? models[0];
  state.model = model;
  $("model").textContent = `${model.id}${model.family ? ` · ${model.family}` : ""}`;
  const adapters = models.filter((m) => m.parent === model.id);
  /** @type {HTMLSelectElement} */ ($("lora")).append(
    ...adapters.map((a) => new Option(a.id, a.id)),
  );
  $("lora-field").hidden = adapters.length === 0;
  fillSizes(model);
  applyDefaults(model);
  const editable = (model.max_edit_images ?? 0) > 0;
  setEditable(editable);
  document.body.classList.toggle("can-edit", editable);
}

/**
 * The size choices: the model's default, the squares it allows, a wide and a tall one.
 * @param {Model} model
 */
function fillSizes(model) {
  const defaults = model.defaults;
  const multiple = model.size_multiple ?? 8;
  const maxPixels = model.max_image_pixels ?? 1024 * 1024;
  const [dw, dh] = (defaults?.size ?? "512x512").split("x").map(Number);
  const sizes = new Set([`${dw}x${dh}`]);
  for (const side of SQUARE_SIDES) {
    if (side % multiple === 0 && side * side <= maxPixels) sizes.add(`${side}x${side}`);
  }
  const round = (/** @type {number} */ v) =>
    Math.max(multiple, Math.round(v / multiple) * multiple);
  const wide = `${round(dw * 4 / 3)}x${round(dh * 3 / 4)}`;
  const tall = `${round(dw * 3 / 4)}x${round(dh * 4 / 3)}`;
  for (const s of [wide, tall]) {
    const [w, h] = s.split("x").map(Number);
    if (w * h <= maxPixels) sizes.add(s);
  }
  const select = /** @type {HTMLSelectElement} */ ($("size"));
  select.replaceChildren(
    ...[...sizes].map((s) => new Option(s === `${dw}x${dh}` ? `${s} (default)` : s, s)),
    new Option("custom…", "custom"),
  );
  input("width").step = input("height").step = String(multiple);
}

/**
 * The model's defaults into the form's number fields.
 * @param {Model} model
 */
function applyDefaults(model) {
  const defaults = model.defaults;
  const [dw, dh] = (defaults?.size ?? "512x512").split("x").map(Number);
  input("width").value = String(dw);
  input("height").value = String(dh);
  if (defaults) {
    input("steps").value = String(defaults.num_inference_steps);
    input("guidance").value = String(defaults.guidance_scale);
    if (defaults.true_cfg_scale !== undefined) {
      $("true-cfg-field").hidden = false;
      input("true-cfg").value = String(defaults.true_cfg_scale);
    }
  }
}

/**
 * The request as the API takes it (without the streaming fields), or a message saying what is
 * wrong with the form.
 * @returns {{ body: Record<string, unknown> } | { problem: string }}
 */
function requestBody() {
  const prompt = input("prompt").value.trim();
  if (!prompt) return { problem: "Enter a prompt." };
  const multiple = state.model?.size_multiple ?? 8;
  let size = input("size").value;
  if (size === "custom") {
    const w = Number(input("width").value), h = Number(input("height").value);
    if (!(w > 0 && h > 0 && w % multiple === 0 && h % multiple === 0)) {
      return { problem: `Width and height must be positive multiples of ${multiple}.` };
    }
    size = `${w}x${h}`;
  }
  const adapter = input("lora").value;
  /** @type {Record<string, unknown>} */
  const body = {
    ...(adapter ? { model: adapter } : {}),
    prompt,
    size,
    n: Number(input("n").value) || 1,
  };
  const negative = input("negative").value.trim();
  if (negative) body.negative_prompt = negative;
  const number = (/** @type {string} */ id) =>
    input(id).value === "" ? undefined : Number(input(id).value);
  const steps = number("steps"), guidance = number("guidance");
  if (steps !== undefined) body.num_inference_steps = steps;
  if (guidance !== undefined) body.guidance_scale = guidance;
  if (!$("true-cfg-field").hidden && number("true-cfg") !== undefined) {
    body.true_cfg_scale = number("true-cfg");
  }
  if (!input("random-seed").checked) {
    const seed = number("seed");
    if (seed === undefined || !Number.isInteger(seed) || seed < 0) {
      return { problem: "The seed must be a whole number ≥ 0 (or tick random)." };
    }
    body.seed = seed;
  }
  if (adapter) {
    // `model` applies the adapter at scale 1; another scale goes in `lora`, naming the same one.
    const scale = number("lora-scale");
    const { min, max } = input("lora-scale");
    if (scale === undefined || !(scale >= Number(min) && scale <= Number(max))) {
      return { problem: `The LoRA scale must be a number from ${min} to ${max}.` };
    }
    if (scale !== 1) body.lora = { name: adapter, scale };
  }
  const format = input("format").value;
  if (format !== "png") body.output_format = format;
  const n = Number(body.n);
  const count = input("n");
  if (!(Number.isInteger(n) && n >= Number(count.min) && n <= Number(count.max))) {
    return { problem: `Images: ${count.min} to ${count.max}.` };
  }
  return { body };
}

/**
 * Server-sent events of a response body.
 * @param {ReadableStream<Uint8Array>} stream
 * @returns {AsyncGenerator<{ event: string, data: string }>}
 */
async function* readEvents(stream) {
  const reader = stream.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += decoder.decode(value, { stream: true }).replaceAll("\r\n", "\n");
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      let event = "message", data = "";
      for (const line of block.split("\n")) {
        if (line.startsWith("event:")) event = line.slice(6).trim();
        else if (line.startsWith("data:")) data += line.slice(5).trimStart();
      }
      if (data) yield { event, data };
    }
  }
}

/** @param {boolean} running */
function setRunning(running) {
  input("generate").disabled = running;
  input("cancel").disabled = !running;
  $("progress").hidden = !running;
}

/**
 * @param {number} done
 * @param {number} total
 * @param {string} text
 */
function setProgress(done, total, text) {
  $("progress-fill").style.width = `${total ? (100 * done) / total : 0}%`;
  $("progress-text").textContent = text;
}

/**
 * Starts the form's request as a stream: a generation, or with an image loaded, an edit of it
 * (multipart, at the image's size). Both streams' events end in `.progress`, `.partial_image`
 * and `.completed` (`image_generation.*` or `image_edit.*`).
 * @param {Record<string, unknown>} body
 * @param {AbortSignal} signal
 */
async function startStream(body, signal) {
  const streaming = {
    stream: true,
    partial_images: Number(input("previews").value) || 0,
    stream_options: { include_progress: true },
  };
  if (editing()) {
    const form = await editForm({ ...body, size: "auto", ...streaming });
    return api("/v1/images/edits", { method: "POST", body: form, signal });
  }
  return api("/v1/images/generations", {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ ...body, ...streaming }),
    signal,
  });
}

/**
 * The progress line of a step, with how many steps so far reused the denoiser's last output (the
 * server's step cache) when any did.
 * @param {{ step: number, total: number, elapsed_ms: number }} e
 * @param {number} cached
 */
function stepText(e, cached) {
  const skipped = cached ? ` · ${cached} cached` : "";
  return `step ${e.step} of ${e.total}${skipped} · ${(e.elapsed_ms / 1000).toFixed(1)} s`;
}

/** Runs the form's request as a stream, showing previews and progress, then adds the results. */
async function generate() {
  showError("");
  const built = requestBody();
  if ("problem" in built) return showError(built.problem);
  const { body } = built;
  if (editing()) Object.assign(body, { size: "auto", edit: editSummary() });
  const controller = new AbortController();
  state.controller = controller;
  setRunning(true);
  setProgress(0, 1, "queued…");
  // Stacked layout: the progress, previews and result would otherwise be below the fold.
  if (matchMedia(NARROW).matches) $("output").scrollIntoView({ block: "start" });
  const live = $("live");
  live.replaceChildren();
  const started = performance.now();
  let cachedSteps = 0;
  /**
   * @type {{ b64: string, index: number, seed: number, size: string,
   *   timings?: Record<string, number> }[]}
   */
  const completed = [];
  try {
    const { edit: _, ...fields } = body;
    const res = await startStream(fields, controller.signal);
    if (!res.ok || !res.body) throw new Error(await errorText(res));
    const mime = `image/${body.output_format ?? "png"}`;
    for await (const { event, data } of readEvents(res.body)) {
      const e = JSON.parse(data);
      if (event === "error") throw new Error(e.error?.message ?? "The generation failed.");
      const type = String(e.type).replace(/^image_(generation|edit)\./, "");
      if (type === "progress") {
        if (e.cached) cachedSteps++;
        setProgress(e.step, e.total, stepText(e, cachedSteps));
      } else if (type === "partial_image") {
        showLive(
          live,
          e.image_index ?? 0,
          `data:${mime};base64,${e.b64_json}`,
          `preview ${e.partial_image_index + 1}`,
        );
      } else if (type === "completed") {
        showLive(live, e.image_index ?? 0, `data:${mime};base64,${e.b64_json}`, "final");
        completed.push({
          b64: e.b64_json,
          index: e.image_index ?? 0,
          seed: e.seed,
          size: e.size,
          timings: e.timings,
        });
      }
    }
    if (completed.length === 0) throw new Error("The stream ended without an image.");
    const seconds = (performance.now() - started) / 1000;
    if (input("random-seed").checked) input("seed").value = String(completed[0].seed);
    const n = Number(body.n);
    const images = completed.sort((a, b) => a.index - b.index).map((image) => ({
      // The server draws all n images from one generator seeded with `seed` (as diffusers
      // does), so an image is named by the request's seed and its index in the batch.
      // An edit's "auto" size is recorded as the size it came out at.
      request: { ...body, seed: image.seed, ...(body.edit ? { size: image.size } : {}) },
      index: image.index,
      n,
      seed: image.seed,
      mime,
      blob: new Blob([Uint8Array.from(atob(image.b64), (c) => c.charCodeAt(0))], { type: mime }),
      seconds,
      timings: image.timings,
    }));
    live.replaceChildren();
    for (const image of images) showImage(image);
    await keep(images);
  } catch (e) {
    if (controller.signal.aborted) showError("Cancelled.");
    else showError(reason(e));
  } finally {
    state.controller = undefined;
    setRunning(false);
  }
}

/**
 * Saves new gallery images in this browser; says so when it cannot (they stay on the page).
 * @param {GalleryImage[]} images
 */
async function keep(images) {
  try {
    for (const image of images) await saveImage(image);
  } catch (e) {
    showError(
      `The images are shown but not kept in this browser: ${reason(e)}`,
    );
  }
}

/**
 * @param {HTMLElement} live
 * @param {number} index
 * @param {string} src
 * @param {string} label
 */
function showLive(live, index, src, label) {
  let img =
    /** @type {HTMLImageElement | null} */ (live.querySelector(`img[data-index="${index}"]`));
  if (!img) {
    img = document.createElement("img");
    img.dataset.index = String(index);
    live.append(img);
  }
  img.src = src;
  img.alt = `Image ${index + 1}, ${label}`;
  img.dataset.stage = label;
}

/**
 * Puts an image at the top of the gallery, with what it was made from and its buttons.
 * @param {GalleryImage} image
 */
function showImage(image) {
  $("empty").hidden = true;
  $("clear-gallery").hidden = false;
  const { request, index, n, seed, mime } = image;
  const url = URL.createObjectURL(image.blob);
  const figure = document.createElement("figure");
  const img = document.createElement("img");
  img.src = url;
  img.alt = String(request.prompt);
  const caption = document.createElement("figcaption");
  const prompt = document.createElement("p");
  prompt.className = "prompt";
  prompt.textContent = String(request.prompt);
  const meta = document.createElement("p");
  meta.className = "meta";
  const t = image.timings;
  const lora = /** @type {{ scale?: number } | undefined} */ (request.lora);
  const edited = /** @type {{ strength: number, masked: boolean } | undefined} */ (request.edit);
  meta.textContent = [
    ...(edited ? [`edit${edited.masked ? " (masked)" : ""}, strength ${edited.strength}`] : []),
    request.size,
    `seed ${seed}` + (n > 1 ? `, image ${index + 1} of ${n}` : ""),
    ...(request.model
      ? [`LoRA ${request.model}${lora?.scale === undefined ? "" : ` × ${lora.scale}`}`]
      : []),
    `${image.seconds.toFixed(1)} s` +
    (t ? ` (denoise ${Math.round(t.denoise_ms)} ms, decode ${Math.round(t.decode_ms)} ms)` : ""),
    ...(t?.cached_steps ? [`${t.cached_steps} steps cached`] : []),
  ].join(" · ");
  const buttons = document.createElement("div");
  buttons.className = "buttons";
  const extension = mime.split("/")[1] === "jpeg" ? "jpg" : mime.split("/")[1];
  const file = `denoise-${seed}-${index + 1}.${extension}`;
  const download = document.createElement("a");
  download.href = url;
  download.download = file;
  download.textContent = "Download";
  const reuse = smallButton("Reuse", () => reuseSettings(request));
  reuse.title = "Put this image's prompt, seed and settings into the form";
  const editThis = smallButton("Edit this", () => void loadEditImage(image.blob));
  editThis.classList.add("edit-this");
  editThis.title = "Load this image into the edit mode";
  buttons.append(download, reuse, editThis);
  // The copied code makes a generation; an edit's input image is not kept to copy.
  if (!edited) {
    for (
      const [label, make] of /** @type {const} */ ([
        ["Copy as curl", curlCommand],
        ["Copy as Python", pythonRequests],
        ["Copy as openai SDK", pythonOpenAI],
      ])
    ) {
      const button = smallButton(label, () => copy(make(request, index, file), button));
      buttons.append(button);
    }
  }
  caption.append(prompt, meta, buttons);
  figure.append(img, caption);
  $("gallery").prepend(figure);
}

/**
 * @param {string} label
 * @param {() => void} onClick
 */
function smallButton(label, onClick) {
  const button = document.createElement("button");
  button.type = "button";
  button.className = "small secondary";
  button.textContent = label;
  button.addEventListener("click", onClick);
  return button;
}

/**
 * Says `message` to screen readers (a polite live region).
 * @param {string} message
 */
function announce(message) {
  const region = $("announce");
  region.textContent = "";
  // A fresh text node, so that the same message twice is announced twice.
  requestAnimationFrame(() => region.textContent = message);
}

/**
 * Copies `text`, saying "Copied" on the button for a moment.
 * @param {string} text
 * @param {HTMLButtonElement} button
 */
async function copy(text, button) {
  try {
    await navigator.clipboard.writeText(text);
  } catch {
    // No clipboard access (e.g. plain http on another host): show the text to copy by hand.
    const dialog = /** @type {HTMLDialogElement} */ ($("copy-dialog"));
    /** @type {HTMLTextAreaElement} */ ($("copy-text")).value = text;
    dialog.showModal();
    return;
  }
  const label = button.dataset.label ?? button.textContent ?? "";
  button.dataset.label = label;
  button.textContent = "Copied";
  announce(`Copied to the clipboard (${label.replace(/^Copy as /, "")}).`);
  clearTimeout(Number(button.dataset.timer));
  button.dataset.timer = String(setTimeout(() => button.textContent = label, 1500));
}

const endpoint = () => `${location.origin}/v1/images/generations`;

/**
 * @param {Record<string, unknown>} request
 * @param {number} index
 * @param {string} file
 */
function curlCommand(request, index, file) {
  const json = JSON.stringify(request).replaceAll("'", "'\\''");
  const auth = state.apiKey ? `  -H "Authorization: Bearer $DENOISE_API_KEY" \\\n` : "";
  return `curl -s ${endpoint()} \\\n  -H "Content-Type: application/json" \\\n${auth}` +
    `  -d '${json}' \\\n  | jq -r '.data[${index}].b64_json' | base64 -d > ${file}`;
}

/**
 * A JSON value as a Python literal.
 * @param {unknown} v
 * @returns {string}
 */
function py(v) {
  if (v === null || v === undefined) return "None";
  if (v === true) return "True";
  if (v === false) return "False";
  if (Array.isArray(v)) return `[${v.map(py).join(", ")}]`;
  if (typeof v === "object") {
    return `{${Object.entries(v).map(([k, x]) => `${JSON.stringify(k)}: ${py(x)}`).join(", ")}}`;
  }
  return JSON.stringify(v);
}

/**
 * @param {Record<string, unknown>} request
 * @param {number} index
 * @param {string} file
 */
function pythonRequests(request, index, file) {
  const headers = state.apiKey
    ? `, headers={"Authorization": "Bearer " + os.environ["DENOISE_API_KEY"]}`
    : "";
  return [
    `import base64${state.apiKey ? ", os" : ""}`,
    "",
    "import requests",
    "",
    `response = requests.post(${JSON.stringify(endpoint())}, json=${py(request)}${headers})`,
    "response.raise_for_status()",
    `with open(${JSON.stringify(file)}, "wb") as f:`,
    `    f.write(base64.b64decode(response.json()["data"][${index}]["b64_json"]))`,
  ].join("\n");
}

/**
 * @param {Record<string, unknown>} request
 * @param {number} index
 * @param {string} file
 */
function pythonOpenAI(request, index, file) {
  const { model, prompt, n, size, output_format, ...extra } = request;
  const args = [
    ...(model ? [`model=${py(model)}`] : []),
    `prompt=${py(prompt)}`,
    `n=${py(n)}`,
    `size=${py(size)}`,
  ];
  if (output_format) args.push(`output_format=${py(output_format)}`);
  args.push(`extra_body=${py(extra)}`);
  const key = state.apiKey ? `os.environ["DENOISE_API_KEY"]` : `"none"`;
  return [
    `import base64${state.apiKey ? ", os" : ""}`,
    "",
    "from openai import OpenAI",
    "",
    `client = OpenAI(base_url=${JSON.stringify(`${location.origin}/v1`)}, api_key=${key})`,
    `result = client.images.generate(${args.join(", ")})`,
    `with open(${JSON.stringify(file)}, "wb") as f:`,
    `    f.write(base64.b64decode(result.data[${index}].b64_json))`,
  ].join("\n");
}

/** The form's settings, by element id (checkboxes by whether they are ticked). */
function formSettings() {
  /** @type {Record<string, string | boolean>} */
  const settings = {};
  for (const id of SETTINGS) {
    const el = input(id);
    settings[id] = el.type === "checkbox" ? el.checked : el.value;
  }
  return settings;
}

/**
 * Puts settings into the form; a select keeps its value where it has no such option (the server
 * may now serve another model, without that size or adapter).
 * @param {Record<string, unknown>} settings
 */
function applySettings(settings) {
  for (const id of SETTINGS) {
    const value = settings[id];
    if (value === undefined) continue;
    const el = input(id);
    if (el.type === "checkbox") el.checked = Boolean(value);
    else if (el instanceof HTMLSelectElement) {
      if ([...el.options].some((o) => o.value === String(value))) el.value = String(value);
    } else el.value = String(value);
  }
  syncForm();
}

/** Shows and enables the fields that depend on others. */
function syncForm() {
  $("custom-size").hidden = input("size").value !== "custom";
  input("seed").disabled = input("random-seed").checked;
}

/**
 * Fills the form from a gallery image's request, so that Generate makes it again.
 * @param {Record<string, unknown>} request
 */
function reuseSettings(request) {
  const sizes = [.../** @type {HTMLSelectElement} */ ($("size")).options].map((o) => o.value);
  // An edit was made at its image's size ("auto"): the form's size is left as it is.
  const auto = request.size === "auto";
  const [width, height] = auto ? [] : String(request.size).split("x");
  const lora = /** @type {{ scale?: number } | undefined} */ (request.lora);
  applySettings({
    prompt: request.prompt,
    negative: request.negative_prompt ?? "",
    lora: request.model ?? "",
    "lora-scale": lora?.scale ?? 1,
    size: auto ? undefined : sizes.includes(String(request.size)) ? request.size : "custom",
    width,
    height,
    steps: request.num_inference_steps,
    guidance: request.guidance_scale,
    "true-cfg": request.true_cfg_scale,
    seed: request.seed,
    "random-seed": false,
    n: request.n,
    format: request.output_format ?? "png",
  });
  saveSettings(formSettings());
  input("prompt").focus();
  announce(`Settings of this image are in the form (seed ${request.seed}).`);
}

/** Shows the images kept in this browser, newest first. */
async function showSavedImages() {
  try {
    for (const image of await savedImages()) showImage(image);
  } catch (e) {
    showError(
      `The kept gallery could not be read: ${reason(e)}`,
    );
  }
}

function wireForm() {
  const form = /** @type {HTMLFormElement} */ ($("form"));
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    void generate();
  });
  form.addEventListener("input", () => saveSettings(formSettings()));
  form.addEventListener("change", () => {
    syncForm();
    saveSettings(formSettings());
  });
  $("cancel").addEventListener("click", () => state.controller?.abort());
  wireEdit({ onChange: () => {}, onError: showError });
  document.addEventListener("keydown", (e) => {
    // Escape cancels a running generation, unless it is closing a dialog.
    if (e.key === "Escape" && state.controller && !document.querySelector("dialog[open]")) {
      e.preventDefault();
      state.controller.abort();
    }
  });
  $("reset-settings").addEventListener("click", () => {
    forgetSettings();
    form.reset();
    if (state.model) applyDefaults(state.model);
    syncForm();
    showError("");
    announce("Settings reset to the server's defaults.");
  });
  $("clear-gallery").addEventListener("click", async () => {
    try {
      await clearImages();
    } catch (e) {
      return showError(
        `The gallery could not be cleared: ${reason(e)}`,
      );
    }
    for (const img of $("gallery").querySelectorAll("img")) URL.revokeObjectURL(img.src);
    $("gallery").replaceChildren();
    $("empty").hidden = false;
    $("clear-gallery").hidden = true;
    announce("Gallery cleared.");
  });
  input("prompt").addEventListener("keydown", (e) => {
    if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) form.requestSubmit();
  });
}

wireForm();
await showSavedImages();
await waitUntilReady();
try {
  await loadModel();
  applySettings(loadSettings());
} catch (e) {
  showError(reason(e));
}
