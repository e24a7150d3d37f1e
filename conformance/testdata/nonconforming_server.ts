/**
 * A deliberately non-conforming image server for the suite's own tests. Its faults, each of
 * which must make specific cases fail:
 * - ignores `size` (always 64×64) and `seed`, and returns `n` identical images;
 * - answers a missing prompt with 400 `{"error": "..."}` instead of 422 `detail[]`;
 * - accepts `n` outside 1–10;
 * - answers a malformed size with 400 but `{"message": ...}` (no `detail`).
 * It handles a wrongly typed `n` and a model mismatch correctly, so those cases must pass.
 *
 * @module
 */
import { encodeImage } from "../../compute/image/mod.ts";

const SIDE = 64;

/** Starts the server on a free port. */
export async function startNonconformingServer(): Promise<
  { url: string; shutdown: () => Promise<void> }
> {
  const png = await encodeImage({
    width: SIDE,
    height: SIDE,
    data: new Uint8Array(SIDE * SIDE * 3).fill(128),
  }, "png");
  const b64 = png.toBase64();
  const json = (body: unknown, status = 200) => Response.json(body, { status });
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen: () => {} }, async (req) => {
    const path = new URL(req.url).pathname;
    if (req.method === "GET" && path === "/v1/models") {
      return json({
        object: "list",
        data: [{ id: "bad-model", object: "model", created: 0, owned_by: "test" }],
      });
    }
    const body = await req.json().catch(() => ({}));
    if (path === "/v1/images/generations") {
      if (typeof body.prompt !== "string") return json({ error: "prompt is required" }, 400);
      if (body.n !== undefined && typeof body.n !== "number") {
        return json({
          detail: [{
            loc: ["body", "n"],
            msg: "value is not a valid integer",
            type: "type_error.integer",
          }],
        }, 422);
      }
      if (body.model && body.model !== "bad-model") {
        return json({
          detail:
            `Model mismatch: request specifies '${body.model}' but server is running 'bad-model'.`,
        }, 400);
      }
      if (typeof body.size === "string" && !/^\d+x\d+$/.test(body.size)) {
        return json({ message: "bad size" }, 400);
      }
      const n = Math.max(1, Math.min(body.n ?? 1, 10));
      return json({
        created: 0,
        data: Array.from({ length: n }, () => ({ b64_json: b64, url: null, revised_prompt: null })),
      });
    }
    if (path === "/v1/chat/completions") {
      return json({
        id: "chatcmpl-x",
        object: "chat.completion",
        created: 0,
        model: "bad-model",
        choices: [{
          index: 0,
          message: {
            role: "assistant",
            content: [{ type: "image_url", image_url: { url: `data:image/png;base64,${b64}` } }],
          },
          finish_reason: "stop",
        }],
        usage: { prompt_tokens: 1, completion_tokens: 1, total_tokens: 2 },
      });
    }
    return json({ detail: "Not Found" }, 404);
  });
  return { url: `http://127.0.0.1:${server.addr.port}`, shutdown: () => server.shutdown() };
}
