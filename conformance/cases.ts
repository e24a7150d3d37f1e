/**
 * The conformance cases, as data. Each names the section of the contract it comes from: vLLM-Omni's
 * Image Generation API docs ("Image Generation API › …") or its online-serving text-to-image example
 * ("Text-To-Image example › …").
 *
 * The edit cases come from OpenAI's Images API reference ("OpenAI Images API › Create image edit"),
 * which vLLM-Omni's docs do not cover: its curl form (`image[]`, `mask`), the openai SDK's
 * `images.edit`, the JSON form, and the bad input it describes.
 *
 * Documented examples are kept exactly as written; only the documented host/port
 * (`http://localhost:8000` or `:8091`) is replaced by the target's base URL.
 *
 * @module
 */

/** What a case's output must be. */
export type Expectation =
  | { kind: "png"; file: string; width?: number; height?: number }
  | { kind: "images"; count: number; width?: number; height?: number; distinct?: boolean }
  | { kind: "chat-images"; count: number; width?: number; height?: number }
  | { kind: "error"; status: 400 | 503; detail?: string | RegExp }
  | { kind: "validation"; status: 422; loc: (string | number)[] }
  | { kind: "reproducible" };

/** How a case talks to the server. */
export type Action =
  | { kind: "shell"; script: string }
  | { kind: "python"; script: string }
  | { kind: "http"; path: string; body: unknown }
  | { kind: "openai-images"; params: Record<string, unknown> }
  | { kind: "openai-chat"; params: Record<string, unknown> }
  | { kind: "seeds"; body: Record<string, unknown> }
  /** A multipart POST: text fields, and files of {@linkcode EDIT_FILES} as [field, file name]. */
  | { kind: "multipart"; path: string; fields: Record<string, string>; files: [string, string][] }
  /** The openai SDK's `images.edit`, its file parameters named by {@linkcode EDIT_FILES}. */
  | { kind: "openai-edit"; params: Record<string, unknown>; files: Record<string, string> };

/** One conformance case. */
export interface Case {
  id: string;
  source: string;
  action: Action;
  expect: Expectation;
  /** Only meaningful when the operator says the target has no ready engine. */
  unreadyOnly?: boolean;
  /** Edits an image: skipped when the target says its model cannot (`max_edit_images: 0`). */
  needsEdit?: boolean;
  /** Needs a server-side LoRA adapter: runs only with `--lora-path`, substituted for the placeholder. */
  needsLora?: boolean;
}

/** The adapter path placeholder of the documented LoRA example. */
export const LORA_PLACEHOLDER = "/path/to/lora_adapter";

/** The model name placeholder in documented examples that name one. */
export const MODEL_PLACEHOLDER = "Qwen/Qwen-Image";

/** The edit cases' input files, base64: 64×64 PNGs (64 is a multiple of every model's). */
export const EDIT_FILES: Record<string, string> = {
  /** A red circle on a blue background. */
  "scene.png":
    "iVBORw0KGgoAAAANSUhEUgAAAEAAAABACAIAAAAlC+aJAAAACXBIWXMAAAPoAAAD6AG1e1JrAAAAoUlEQVRo3u3ZyxHAIAhF0VcJ6/RfhUWkmLTghyjgnaGAe3YKsqelHgEAAAAAAAAAAADwmtesZyICOtPdGTqS7sjQ2fp1g86mrzMUpH7aoDj1c4b7AL/WTxgUrX7UcBNgW/2Q4RrA5vp+AwAAAAAAAAAAAACe0ykAfCkDANJvJVhsxQCk341W2E5XuA8UudBUuJEVuVJy6AYAAAAAAAAAJJwPLMERot5LbD0AAAAASUVORK5CYII=",
  /** Transparent (edit) on the left half, opaque on the right. */
  "mask.png":
    "iVBORw0KGgoAAAANSUhEUgAAAEAAAABACAYAAACqaXHeAAAACXBIWXMAAAPoAAAD6AG1e1JrAAAAZElEQVR42u3QAQkAAAzDsPk3/csYgxRqIEm/Kw8AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAACsAzwufPhqkdgnAQAAAABJRU5ErkJggg==",
  /** The same mask at 32×32: not the image's size. */
  "mask-32.png":
    "iVBORw0KGgoAAAANSUhEUgAAACAAAAAgCAYAAABzenr0AAAACXBIWXMAAAPoAAAD6AG1e1JrAAAALklEQVRYw+3OsQ0AAAzCMP5/uj2CgcWRsjvpu3IAAAAAAAAAAAAAAAAAAIAt4AEgMv4QBsRgGAAAAABJRU5ErkJggg==",
  /** Black RGB, no alpha: not a mask. */
  "opaque.png":
    "iVBORw0KGgoAAAANSUhEUgAAAEAAAABACAIAAAAlC+aJAAAACXBIWXMAAAPoAAAD6AG1e1JrAAAAIklEQVRo3u3BAQ0AAADCoPdPbQ8HFAAAAAAAAAAAAAAA8G4wQAABEp2S+AAAAABJRU5ErkJggg==",
  /** Text, named like an image. */
  "notes.png": btoa("these are notes, not an image"),
};

/** A shell line that writes `name` of {@linkcode EDIT_FILES} in the case's folder. */
const writeFile = (name: string) => `echo '${EDIT_FILES[name]}' | base64 -d > ${name}`;

const EDIT_SOURCE = "OpenAI Images API › Create image edit";

/** The edit cases: documented requests that must work, then the bad input that must not. */
const EDIT_CASES: Case[] = [
  {
    id: "edit-curl-mask",
    source: `${EDIT_SOURCE} › curl with image[] and mask`,
    action: {
      kind: "shell",
      script: `${writeFile("scene.png")}
${writeFile("mask.png")}
curl -s -X POST "http://localhost:8000/v1/images/edits" \
  -F "image[]=@scene.png" \
  -F "mask=@mask.png" \
  -F 'prompt=a red circle on a green background' \
  | jq -r '.data[0].b64_json' | base64 --decode > output.png`,
    },
    expect: { kind: "png", file: "output.png", width: 64, height: 64 },
    needsEdit: true,
  },
  {
    id: "edit-openai-sdk",
    source: `${EDIT_SOURCE} › the openai SDK's images.edit with a file upload`,
    action: {
      kind: "openai-edit",
      params: { model: MODEL_PLACEHOLDER, prompt: "a yellow circle on a blue background", n: 2 },
      files: { image: "scene.png" },
    },
    expect: { kind: "images", count: 2, width: 64, height: 64 },
    needsEdit: true,
  },
  {
    id: "edit-multipart-fields",
    source: `${EDIT_SOURCE} › multipart fields as text (size, n, strength, seed)`,
    action: {
      kind: "multipart",
      path: "/v1/images/edits",
      fields: { prompt: "a red square on a blue background", size: "64x64", strength: "0.6" },
      files: [["image", "scene.png"]],
    },
    expect: { kind: "images", count: 1, width: 64, height: 64 },
    needsEdit: true,
  },
  {
    id: "edit-json-data-url",
    source: `${EDIT_SOURCE} › JSON body, images as data URLs`,
    action: {
      kind: "http",
      path: "/v1/images/edits",
      body: {
        images: [{ image_url: `data:image/png;base64,${EDIT_FILES["scene.png"]}` }],
        mask: { image_url: `data:image/png;base64,${EDIT_FILES["mask.png"]}` },
        prompt: "a red circle on a white background",
      },
    },
    expect: { kind: "images", count: 1, width: 64, height: 64 },
    needsEdit: true,
  },
  {
    id: "edit-error-not-an-image",
    source: `${EDIT_SOURCE} › image must be a PNG, WebP or JPG`,
    action: {
      kind: "multipart",
      path: "/v1/images/edits",
      fields: { prompt: "x" },
      files: [["image", "notes.png"]],
    },
    expect: { kind: "error", status: 400, detail: /image/i },
    needsEdit: true,
  },
  {
    id: "edit-error-mask-size",
    source: `${EDIT_SOURCE} › mask must have the same dimensions as image`,
    action: {
      kind: "multipart",
      path: "/v1/images/edits",
      fields: { prompt: "x" },
      files: [["image", "scene.png"], ["mask", "mask-32.png"]],
    },
    expect: { kind: "error", status: 400, detail: /size|dimension/i },
    needsEdit: true,
  },
  {
    id: "edit-error-mask-alpha",
    source: `${EDIT_SOURCE} › mask must have an alpha channel`,
    action: {
      kind: "multipart",
      path: "/v1/images/edits",
      fields: { prompt: "x" },
      files: [["image", "scene.png"], ["mask", "opaque.png"]],
    },
    expect: { kind: "error", status: 400, detail: /alpha/i },
    needsEdit: true,
  },
  {
    id: "edit-error-strength",
    source: `${EDIT_SOURCE} › strength (0–1, vLLM-Omni's extension)`,
    action: {
      kind: "http",
      path: "/v1/images/edits",
      body: {
        images: [{ image_url: `data:image/png;base64,${EDIT_FILES["scene.png"]}` }],
        prompt: "x",
        strength: 1.5,
      },
    },
    expect: { kind: "validation", status: 422, loc: ["body", "strength"] },
  },
  {
    id: "edit-error-missing-image",
    source: `${EDIT_SOURCE} › image is required`,
    action: { kind: "multipart", path: "/v1/images/edits", fields: { prompt: "x" }, files: [] },
    expect: { kind: "validation", status: 422, loc: ["body", "image"] },
  },
];

export const CASES: Case[] = [
  {
    id: "images-curl-dragon",
    source: "Image Generation API › Quick Start › Generate Images › Using curl",
    action: {
      kind: "shell",
      script: `curl -X POST http://localhost:8000/v1/images/generations \\
  -H "Content-Type: application/json" \\
  -d '{
    "prompt": "a dragon laying over the spine of the Green Mountains of Vermont",
    "size": "1024x1024",
    "seed": 42
  }' | jq -r '.data[0].b64_json' | base64 -d > dragon.png`,
    },
    expect: { kind: "png", file: "dragon.png", width: 1024, height: 1024 },
  },
  {
    id: "images-python-cat",
    source: "Image Generation API › Quick Start › Generate Images › Using Python",
    action: {
      kind: "python",
      script: `import requests
import base64
from PIL import Image
import io

response = requests.post(
    "http://localhost:8000/v1/images/generations",
    json={
        "prompt": "a black and white cat wearing a princess tiara",
        "size": "1024x1024",
        "num_inference_steps": 50,
        "seed": 42,
    }
)

# Decode and save
img_data = response.json()["data"][0]["b64_json"]
img_bytes = base64.b64decode(img_data)
img = Image.open(io.BytesIO(img_bytes))
img.save("cat.png")`,
    },
    expect: { kind: "png", file: "cat.png", width: 1024, height: 1024 },
  },
  {
    id: "images-openai-sdk",
    source: "Image Generation API › Quick Start › Generate Images › Using OpenAI SDK",
    action: {
      kind: "openai-images",
      params: {
        model: MODEL_PLACEHOLDER,
        prompt: "a horse jumping over a fence nearby a babbling brook",
        n: 1,
        size: "1024x1024",
        response_format: "b64_json",
      },
    },
    expect: { kind: "images", count: 1, width: 1024, height: 1024 },
  },
  {
    id: "images-multiple",
    source: "Image Generation API › Examples › Multiple Images",
    action: {
      kind: "shell",
      script: `curl -X POST http://localhost:8000/v1/images/generations \\
  -H "Content-Type: application/json" \\
  -d '{
    "prompt": "a steampunk city set in a valley of the Adirondack mountains",
    "n": 4,
    "size": "1024x1024",
    "seed": 123
  }'`,
    },
    expect: { kind: "images", count: 4, width: 1024, height: 1024, distinct: true },
  },
  {
    id: "images-python-negative-prompt",
    source: "Image Generation API › Examples › With Negative Prompt",
    action: {
      kind: "python",
      script: `import requests
import json

response = requests.post(
    "http://localhost:8000/v1/images/generations",
    json={
        "prompt": "a portrait of a skier in deep powder snow",
        "negative_prompt": "blurry, low quality, distorted, ugly",
        "num_inference_steps": 100,
        "size": "1024x1024",
    }
)
print(json.dumps(response.json()))`,
    },
    expect: { kind: "images", count: 1, width: 1024, height: 1024 },
  },
  {
    id: "images-troubleshooting",
    source: "Image Generation API › Troubleshooting › Server Not Running",
    action: {
      kind: "shell",
      script: `curl http://localhost:8000/v1/images/generations \\
  -H "Content-Type: application/json" \\
  -d '{"prompt": "test"}'`,
    },
    expect: { kind: "images", count: 1 },
  },
  {
    id: "images-size-honoured",
    source: "Image Generation API › Request Parameters › size",
    action: {
      kind: "http",
      path: "/v1/images/generations",
      body: { prompt: "a red cat", size: "512x256", seed: 1 },
    },
    expect: { kind: "images", count: 1, width: 512, height: 256 },
  },
  {
    id: "images-seed-reproducible",
    source: "Image Generation API › Request Parameters › seed",
    action: { kind: "seeds", body: { prompt: "a lighthouse at dusk", size: "512x512" } },
    expect: { kind: "reproducible" },
  },
  {
    id: "chat-curl",
    source: "Text-To-Image example › API Calls › Method 1: Using curl",
    action: {
      kind: "shell",
      script: `curl -s http://localhost:8091/v1/chat/completions \\
  -H "Content-Type: application/json" \\
  -d '{
    "messages": [
      {"role": "user", "content": "A beautiful landscape painting"}
    ],
    "extra_body": {
      "height": 1024,
      "width": 1024,
      "num_inference_steps": 50,
      "true_cfg_scale": 4.0,
      "seed": 42
    }
  }' | jq -r '.choices[0].message.content[0].image_url.url' | cut -d',' -f2- | base64 -d > output.png`,
    },
    expect: { kind: "png", file: "output.png", width: 1024, height: 1024 },
  },
  {
    id: "images-curl-lora",
    source: "Text-To-Image example › LoRA › Using curl with LoRA (Images API)",
    action: {
      kind: "shell",
      script: `curl -X POST http://localhost:8091/v1/images/generations \\
  -H "Content-Type: application/json" \\
  -d '{
    "prompt": "A piece of cheesecake",
    "size": "1024x1024",
    "seed": 42,
    "lora": {
      "name": "my_lora",
      "local_path": "/path/to/lora_adapter",
      "scale": 1.0
    }
  }' | jq -r '.data[0].b64_json' | base64 -d > output.png`,
    },
    expect: { kind: "png", file: "output.png", width: 1024, height: 1024 },
    needsLora: true,
  },
  {
    id: "chat-curl-lora",
    source:
      "Text-To-Image example › LoRA › Using Python Client with LoRA (the same request with curl)",
    action: {
      kind: "shell",
      script: `curl -s http://localhost:8091/v1/chat/completions \\
  -H "Content-Type: application/json" \\
  -d '{
    "messages": [
      {"role": "user", "content": "A piece of cheesecake"}
    ],
    "extra_body": {
      "height": 512,
      "width": 512,
      "seed": 42,
      "lora": {"name": "my_lora", "local_path": "/path/to/lora_adapter", "scale": 1.0}
    }
  }' | jq -r '.choices[0].message.content[0].image_url.url' | cut -d',' -f2- | base64 -d > output.png`,
    },
    expect: { kind: "png", file: "output.png", width: 512, height: 512 },
    needsLora: true,
  },
  {
    id: "chat-simple",
    source: "Text-To-Image example › Request Format › Simple Text Generation",
    action: {
      kind: "http",
      path: "/v1/chat/completions",
      body: { messages: [{ role: "user", content: "A beautiful landscape painting" }] },
    },
    expect: { kind: "chat-images", count: 1 },
  },
  {
    id: "chat-extra-body",
    source: "Text-To-Image example › Request Format › Generation with Parameters",
    action: {
      kind: "http",
      path: "/v1/chat/completions",
      body: {
        messages: [{ role: "user", content: "A beautiful landscape painting" }],
        extra_body: {
          height: 1024,
          width: 1024,
          num_inference_steps: 50,
          true_cfg_scale: 4.0,
          seed: 42,
        },
      },
    },
    expect: { kind: "chat-images", count: 1, width: 1024, height: 1024 },
  },
  {
    id: "chat-structured-content",
    source: "Text-To-Image example › Request Format › Multimodal Input (Text + Structured Content)",
    action: {
      kind: "http",
      path: "/v1/chat/completions",
      body: {
        messages: [{
          role: "user",
          content: [{ type: "text", text: "A beautiful landscape painting" }],
        }],
      },
    },
    expect: { kind: "chat-images", count: 1 },
  },
  {
    id: "chat-openai-sdk",
    source: "Text-To-Image example › Generation Parameters (extra_body) through the openai SDK",
    action: {
      kind: "openai-chat",
      params: {
        model: MODEL_PLACEHOLDER,
        messages: [{ role: "user", content: "A beautiful landscape painting" }],
        height: 512,
        width: 512,
        num_inference_steps: 4,
        seed: 42,
      },
    },
    expect: { kind: "chat-images", count: 1, width: 512, height: 512 },
  },
  {
    id: "error-400-size-format",
    source: "Image Generation API › Error Responses › 400 Bad Request",
    action: { kind: "http", path: "/v1/images/generations", body: { prompt: "x", size: "1024x" } },
    expect: {
      kind: "error",
      status: 400,
      detail: "Invalid size format: '1024x'. Width and height must be integers.",
    },
  },
  {
    id: "error-400-model-mismatch",
    source: "Image Generation API › Error Responses › 400 Bad Request (model mismatch)",
    action: {
      kind: "http",
      path: "/v1/images/generations",
      body: { prompt: "x", model: "conformance/no-such-model" },
    },
    expect: { kind: "error", status: 400, detail: /conformance\/no-such-model/ },
  },
  {
    id: "error-422-missing-prompt",
    source: "Image Generation API › Error Responses › 422 Unprocessable Entity",
    action: { kind: "http", path: "/v1/images/generations", body: { size: "512x512" } },
    expect: { kind: "validation", status: 422, loc: ["body", "prompt"] },
  },
  {
    id: "error-422-n-out-of-range",
    source: "Image Generation API › Request Parameters › n (1-10)",
    action: { kind: "http", path: "/v1/images/generations", body: { prompt: "x", n: 11 } },
    expect: { kind: "validation", status: 422, loc: ["body", "n"] },
  },
  {
    id: "error-422-wrong-type",
    source: "Image Generation API › Parameter Handling › basic type checking",
    action: { kind: "http", path: "/v1/images/generations", body: { prompt: "x", n: "four" } },
    expect: { kind: "validation", status: 422, loc: ["body", "n"] },
  },
  {
    id: "error-503-engine-not-ready",
    source: "Image Generation API › Error Responses › 503 Service Unavailable",
    action: { kind: "http", path: "/v1/images/generations", body: { prompt: "test" } },
    expect: {
      kind: "error",
      status: 503,
      detail: "Diffusion engine not initialized. Start server with a diffusion model.",
    },
    unreadyOnly: true,
  },
  ...EDIT_CASES,
];
