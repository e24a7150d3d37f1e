/**
 * The conformance cases, as data. Each names the section of the contract it comes from: vLLM-Omni's
 * Image Generation API docs ("Image Generation API › …") or its online-serving text-to-image example
 * ("Text-To-Image example › …").
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
  | { kind: "seeds"; body: Record<string, unknown> };

/** One conformance case. */
export interface Case {
  id: string;
  source: string;
  action: Action;
  expect: Expectation;
  /** Only meaningful when the operator says the target has no ready engine. */
  unreadyOnly?: boolean;
  /** Needs a server-side LoRA adapter: runs only with `--lora-path`, substituted for the placeholder. */
  needsLora?: boolean;
}

/** The adapter path placeholder of the documented LoRA example. */
export const LORA_PLACEHOLDER = "/path/to/lora_adapter";

/** The model name placeholder in documented examples that name one. */
export const MODEL_PLACEHOLDER = "Qwen/Qwen-Image";

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
];
