import assert from "node:assert/strict";
import { toFloat16 } from "../backends/float16.ts";
import {
  parseSafetensors,
  SafetensorsError,
  serializeSafetensors,
  tensorToFloat32,
} from "./safetensors.ts";

Deno.test("safetensors: a written file reads back, with metadata and every dtype converted", () => {
  const a = Float32Array.of(1, -2, 3.5, 0.25, 5, 6);
  const file = serializeSafetensors(
    {
      "unet.x.lora_A.weight": { shape: [2, 3], data: a },
      b: { shape: [0], data: new Float32Array() },
    },
    { format: "pt" },
  );
  const parsed = parseSafetensors(file);
  assert.deepEqual(parsed.metadata, { format: "pt" });
  const t = parsed.tensors.get("unet.x.lora_A.weight")!;
  assert.deepEqual([t.dtype, t.shape], ["F32", [2, 3]]);
  assert.deepEqual(tensorToFloat32(t), a);
  assert.deepEqual(
    tensorToFloat32({ dtype: "F16", shape: [6], bytes: new Uint8Array(toFloat16(a).buffer) }),
    a,
  );
  const bf16 = new Uint16Array(new Uint32Array(a.buffer).map((bits) => bits >>> 16));
  assert.deepEqual(
    tensorToFloat32({ dtype: "BF16", shape: [6], bytes: new Uint8Array(bf16.buffer) }),
    a,
  );
});

Deno.test("safetensors: nothing in the header is trusted", () => {
  const good = serializeSafetensors({ w: { shape: [2], data: Float32Array.of(1, 2) } });
  const withHeader = (header: unknown, data = new Uint8Array(8)) => {
    const json = new TextEncoder().encode(JSON.stringify(header));
    const out = new Uint8Array(8 + json.length + data.length);
    new DataView(out.buffer).setBigUint64(0, BigInt(json.length), true);
    out.set(json, 8);
    out.set(data, 8 + json.length);
    return out;
  };
  const huge = good.slice();
  new DataView(huge.buffer).setBigUint64(0, 2n ** 63n, true);
  const cases: [Uint8Array, RegExp][] = [
    [good.subarray(0, 5), /shorter than the 8-byte header length/],
    [huge, /header claims \d+ bytes/],
    [withHeader("x"), /not a JSON object/],
    [Uint8Array.of(2, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xfe), /not UTF-8 JSON/],
    [withHeader({ w: { dtype: "I8", shape: [8], data_offsets: [0, 8] } }), /dtype "I8"/],
    [withHeader({ w: { dtype: "F32", shape: [-1], data_offsets: [0, 8] } }), /shape \[-1\]/],
    [
      withHeader({ w: { dtype: "F32", shape: [4], data_offsets: [0, 16] } }),
      /outside the 8 data bytes/,
    ],
    [withHeader({ w: { dtype: "F32", shape: [3], data_offsets: [0, 8] } }), /needs 12/],
    [
      withHeader({
        a: { dtype: "F32", shape: [2], data_offsets: [0, 8] },
        b: { dtype: "F32", shape: [1], data_offsets: [4, 8] },
      }),
      /overlap/,
    ],
    [withHeader({ __metadata__: { n: 1 } }), /__metadata__.n is not a string/],
  ];
  for (const [bytes, message] of cases) {
    assert.throws(
      () => parseSafetensors(bytes, "lora.safetensors"),
      (e: Error) =>
        e instanceof SafetensorsError && message.test(e.message) &&
        e.message.startsWith("lora.safetensors"),
      String(message),
    );
  }
});
