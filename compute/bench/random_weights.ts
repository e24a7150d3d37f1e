/**
 * A {@linkcode WeightSource} of random weights written straight to an external-data file at a
 * chosen {@linkcode WeightDtype}: how `bench:realistic` builds the same network at every dtype.
 * Each parameter's values depend only on its name and the seed (never on the order the builder
 * asks for them), so the fp32, fp16, q8 and q4 graphs hold the same weights before rounding.
 *
 * @module
 */
import type { WeightDtype, WeightSource } from "../graph/onnx_builder.ts";

/**
 * Random weights for `dtype` appended to `path` (named `location` in the graph) as the builder
 * makes them. Matrices and kernels are uniform with a standard deviation of 1/√fan-in (torch's
 * scale), 1-D weights (norms) 1 ± 0.1 and biases ±0.02. Close the file after `serialize`.
 */
export function randomWeights(
  path: string,
  location: string,
  dtype: WeightDtype,
  seed: number,
): WeightSource & { close(): void } {
  const file = Deno.openSync(path, { write: true, create: true, truncate: true });
  let scratch = new Float32Array(0);
  return {
    take(name, dims) {
      const n = dims.reduce((a, b) => a * b, 1);
      if (scratch.length < n) scratch = new Float32Array(n);
      const values = scratch.subarray(0, n);
      const fanIn = dims.slice(1).reduce((a, b) => a * b, 1);
      const [offset, scale] = dims.length > 1
        ? [0, Math.sqrt(3 / fanIn)]
        : name.endsWith(".weight")
        ? [1, 0.1]
        : [0, 0.02];
      // xorshift32 seeded by an FNV-1a hash of the name and the seed.
      let h = 2166136261 ^ seed;
      for (let i = 0; i < name.length; i++) h = Math.imul(h ^ name.charCodeAt(i), 16777619);
      let x = h | 1;
      for (let i = 0; i < n; i++) {
        x ^= x << 13;
        x ^= x >>> 17;
        x ^= x << 5;
        values[i] = offset + ((x >>> 0) / 2 ** 31 - 1) * scale;
      }
      return values;
    },
    output: {
      location,
      dtype,
      append(bytes) {
        let done = 0;
        while (done < bytes.length) done += file.writeSync(bytes.subarray(done));
      },
    },
    close: () => file.close(),
  };
}
