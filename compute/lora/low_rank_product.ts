/**
 * `B·A` for LoRA merging, on ONNX Runtime: one MatMul graph with symbolic dims, opened once per
 * backend and run for every weight. ONNX Runtime's MatMul (MLAS on the CPU) is an order of
 * magnitude faster than the same loop in JavaScript, which made merging a large share of an
 * adapter's first application.
 *
 * @module
 */
import pkg from "onnx-proto";
import { type Backend, readFloat32, type Session } from "../backends/backend.ts";

const { onnx } = pkg;

/** Multiplies `B [out, r]` by `A [r, k]`. */
export class LowRankProduct {
  readonly #backend: Backend;
  readonly #session: Session;

  private constructor(backend: Backend, session: Session) {
    this.#backend = backend;
    this.#session = session;
  }

  /** Opens the MatMul graph on `backend`. */
  static async open(backend: Backend): Promise<LowRankProduct> {
    return new LowRankProduct(backend, await backend.createSession({ bytes: matMulGraph() }));
  }

  /** `B·A`, row-major `[out, k]`. */
  async multiply(b: Float32Array, a: Float32Array, out: number, rank: number, k: number) {
    const result = await this.#session.run({
      B: this.#backend.tensor("float32", b, [out, rank]),
      A: this.#backend.tensor("float32", a, [rank, k]),
    });
    const product = await readFloat32(result.BA);
    result.BA.dispose();
    return product;
  }

  release(): Promise<void> {
    return this.#session.release();
  }
}

function matMulGraph(): Uint8Array {
  const input = (name: string, dims: string[]) => ({
    name,
    type: {
      tensorType: {
        elemType: onnx.TensorProto.DataType.FLOAT,
        shape: { dim: dims.map((dimParam) => ({ dimParam })) },
      },
    },
  });
  return onnx.ModelProto.encode(onnx.ModelProto.create({
    irVersion: 8,
    producerName: "denoise",
    opsetImport: [{ domain: "", version: 17 }],
    graph: {
      name: "lora_product",
      node: [{ opType: "MatMul", name: "/BA/MatMul", input: ["B", "A"], output: ["BA"] }],
      input: [input("B", ["out", "r"]), input("A", ["r", "k"])],
      output: [input("BA", ["out", "k"])],
    },
  })).finish();
}
