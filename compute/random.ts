/**
 * Bit-exact reproduction of `torch.randn` on a seeded CPU generator, so that the same seed
 * starts from the same latents as diffusers.
 *
 * ```ts
 * import { torchRandn } from "./random.ts";
 * const latents = torchRandn([1, 4, 64, 64], 42); // == torch.randn(..., generator=manual_seed(42))
 * ```
 *
 * Sources, in PyTorch's ATen: `MT19937RNGEngine.h`, `CPUGeneratorImpl.cpp`,
 * `TransformationHelper.h` (uniforms), `native/cpu/DistributionTemplates.h` (`normal_fill_16_AVX2`
 * for float32 tensors of 16+ elements, the serial Box–Muller otherwise) and `avx_mathfun.h` (the
 * Cephes `log256_ps` / `sincos256_ps`, evaluated in float32 with the FMA contractions GCC emits for
 * them). The AVX2 path is what x86-64 builds of torch run by default.
 *
 * @module
 */

const MT_N = 624;
const MT_M = 397;

/** The 32-bit Mersenne Twister exactly as ATen's `mt19937` engine seeds and draws it. */
export class Mt19937 {
  readonly #state = new Uint32Array(MT_N);
  #next = 0;
  #left = 1;
  // torch's generator caches the second Box–Muller value of the double path.
  nextDoubleNormal: number | undefined;

  /** Seeds like `torch.Generator().manual_seed(seed)`: only the low 32 bits count. */
  constructor(seed: number | bigint) {
    const s = BigInt.asUintN(32, BigInt(seed));
    this.#state[0] = Number(s);
    for (let j = 1; j < MT_N; j++) {
      const prev = this.#state[j - 1];
      const x = prev ^ (prev >>> 30);
      // 1812433253 * x + j (mod 2^32), split to stay exact in doubles.
      this.#state[j] = (Math.imul(1812433253, x) + j) >>> 0;
    }
  }

  #twist(): void {
    const st = this.#state;
    const mix = (u: number, v: number) => {
      const y = (u & 0x80000000) | (v & 0x7fffffff);
      return (y >>> 1) ^ ((v & 1) ? 0x9908b0df : 0);
    };
    let p = 0;
    for (let j = MT_N - MT_M + 1; --j; p++) st[p] = st[p + MT_M] ^ mix(st[p], st[p + 1]);
    for (let j = MT_M; --j; p++) st[p] = st[p + MT_M - MT_N] ^ mix(st[p], st[p + 1]);
    st[p] = st[p + MT_M - MT_N] ^ mix(st[p], st[0]);
    this.#left = MT_N;
    this.#next = 0;
  }

  /** One tempered 32-bit draw (`random()`). */
  nextUint32(): number {
    if (--this.#left <= 0) this.#twist();
    let y = this.#state[this.#next++];
    y ^= y >>> 11;
    y ^= (y << 7) & 0x9d2c5680;
    y ^= (y << 15) & 0xefc60000;
    y ^= y >>> 18;
    return y >>> 0;
  }

  /** `uniform_real_distribution<float>`: 24 random bits scaled to [0, 1). */
  uniformFloat32(): number {
    return (this.nextUint32() & 0xffffff) * 2 ** -24;
  }

  /** `uniform_real_distribution<double>`: 53 bits of `random64()` (first draw high). */
  uniformFloat64(): number {
    const hi = this.nextUint32();
    const lo = this.nextUint32();
    // (hi << 32 | lo) & (2^53 - 1) = (hi & 0x1fffff) * 2^32 + lo
    return ((hi & 0x1fffff) * 2 ** 32 + lo) * 2 ** -53;
  }

  /** `at::normal_distribution<double>` with its cached second sample (mean 0, std 1). */
  normalFloat64(): number {
    if (this.nextDoubleNormal !== undefined) {
      const cached = this.nextDoubleNormal;
      this.nextDoubleNormal = undefined;
      return cached;
    }
    const u1 = this.uniformFloat64();
    const u2 = this.uniformFloat64();
    const r = Math.sqrt(-2 * Math.log1p(-u2));
    const theta = 2 * Math.PI * u1;
    this.nextDoubleNormal = r * Math.sin(theta);
    return r * Math.cos(theta);
  }
}

// ---- float32 arithmetic, as the AVX2 kernels compute it -------------------------------------

const f32 = Math.fround;
const f64Bits = new Float64Array(1);
const u64Bits = new BigInt64Array(f64Bits.buffer);

/** The neighbouring double of `x` in the direction of `towards`'s sign. */
function nextDouble(x: number, towards: number): number {
  f64Bits[0] = x;
  const up = (towards > 0) === (x >= 0);
  u64Bits[0] += up ? 1n : -1n;
  return f64Bits[0];
}

function isOddDouble(x: number): boolean {
  f64Bits[0] = x;
  return (u64Bits[0] & 1n) === 1n;
}

/**
 * Correctly rounded float32 fused multiply-add. `a·b` of two float32 values is exact in a double;
 * the sum is rounded to odd (TwoSum, then the odd neighbour) so that the final rounding to
 * float32 is not a double rounding.
 */
export function fmaf(a: number, b: number, c: number): number {
  const p = a * b;
  const s = p + c;
  const bv = s - p;
  const err = (p - (s - bv)) + (c - bv);
  if (err === 0 || isOddDouble(s)) return f32(s);
  return f32(nextDouble(s, err));
}

// Cephes constants from avx_mathfun.h, as float32.
const SQRTHF = f32(0.707106781186547524);
const LOG_P = [
  7.0376836292e-2,
  -1.1514610310e-1,
  1.1676998740e-1,
  -1.2420140846e-1,
  1.4249322787e-1,
  -1.6668057665e-1,
  2.0000714765e-1,
  -2.4999993993e-1,
  3.3333331174e-1,
].map(f32);
const LOG_Q1 = f32(-2.12194440e-4);
const LOG_Q2 = f32(0.693359375);
const MIN_NORM_POS = 2 ** -126;

const f32Bits = new Float32Array(1);
const i32Bits = new Int32Array(f32Bits.buffer);

/** `log256_ps` for one lane (inputs here are in (0, 1]). */
function cephesLogf(input: number): number {
  if (input <= 0) return NaN;
  f32Bits[0] = Math.max(input, MIN_NORM_POS);
  let e = f32((i32Bits[0] >>> 23) - 0x7f);
  i32Bits[0] = (i32Bits[0] & ~0x7f800000) | 0x3f000000; // mantissa in [0.5, 1)
  let x = f32Bits[0];
  e = f32(e + 1);
  const below = x < SQRTHF;
  const tmp = below ? x : 0;
  x = f32(x - 1);
  if (below) e = f32(e - 1);
  x = f32(x + tmp);
  const z = f32(x * x);
  let y = LOG_P[0];
  for (let i = 1; i < LOG_P.length; i++) y = fmaf(y, x, LOG_P[i]);
  y = f32(y * x);
  y = fmaf(y, z, f32(e * LOG_Q1));
  y = fmaf(-z, 0.5, y);
  x = f32(x + y);
  return fmaf(e, LOG_Q2, x);
}

const FOPI = f32(1.27323954473516);
const DP = [-0.78515625, -2.4187564849853515625e-4, -3.77489497744594108e-8].map(f32);
const SINCOF = [-1.9515295891e-4, 8.3321608736e-3, -1.6666654611e-1].map(f32);
const COSCOF = [2.443315711809948e-5, -1.388731625493765e-3, 4.166664568298827e-2].map(f32);

/** `sincos256_ps` for one lane. */
function cephesSincosf(input: number): [sin: number, cos: number] {
  let signSin = input < 0 || Object.is(input, -0);
  let x = Math.abs(input);
  let j = Math.trunc(f32(x * FOPI));
  j = (j + 1) & ~1;
  const yj = f32(j);
  if (j & 4) signSin = !signSin;
  // avx_mathfun poly_mask: when bit 1 of j is set the two polynomials swap roles.
  const swapPolys = (j & 2) !== 0;
  for (const dp of DP) x = fmaf(yj, dp, x);
  const signCos = ((j - 2) & 4) === 0;
  const z = f32(x * x);
  let yc = COSCOF[0];
  yc = fmaf(yc, z, COSCOF[1]);
  yc = fmaf(yc, z, COSCOF[2]);
  yc = f32(yc * z);
  yc = fmaf(yc, z, -f32(z * 0.5));
  yc = f32(yc + 1);
  let ys = SINCOF[0];
  ys = fmaf(ys, z, SINCOF[1]);
  ys = fmaf(ys, z, SINCOF[2]);
  ys = f32(ys * z);
  ys = fmaf(ys, x, x);
  const sin = swapPolys ? yc : ys;
  const cos = swapPolys ? ys : yc;
  return [signSin ? -sin : sin, signCos ? -cos : cos];
}

const TWO_PI_F32 = f32(2 * Math.PI);

/** `normal_fill_16_AVX2` on `data[offset .. offset+16)` (mean 0, std 1). */
function normalFill16(data: Float32Array, offset: number): void {
  for (let j = 0; j < 8; j++) {
    const u1 = f32(1 - data[offset + j]);
    const u2 = data[offset + j + 8];
    const radius = f32(Math.sqrt(f32(-2 * cephesLogf(u1))));
    const theta = f32(TWO_PI_F32 * u2);
    const [s, c] = cephesSincosf(theta);
    data[offset + j] = f32(radius * c);
    data[offset + j + 8] = f32(radius * s);
  }
}

/**
 * `torch.randn(shape, generator=torch.Generator("cpu").manual_seed(seed), dtype=torch.float32)`,
 * bit for bit (x86-64 AVX2 kernel for 16+ elements, the double-precision serial path below 16).
 */
export function torchRandn(shape: readonly number[], seed: number | bigint): Float32Array {
  return randnFrom(new Mt19937(seed), shape);
}

/** Draws `torch.randn(shape)` from an existing generator, advancing it as torch does. */
export function randnFrom(gen: Mt19937, shape: readonly number[]): Float32Array {
  for (const d of shape) {
    if (!Number.isInteger(d) || d < 0) throw new RangeError(`Invalid randn shape [${shape}]`);
  }
  const numel = shape.reduce((a, b) => a * b, 1);
  const data = new Float32Array(numel);
  if (numel < 16) {
    for (let i = 0; i < numel; i++) data[i] = gen.normalFloat64();
    return data;
  }
  for (let i = 0; i < numel; i++) data[i] = gen.uniformFloat32();
  for (let i = 0; i < numel - 15; i += 16) normalFill16(data, i);
  if (numel % 16 !== 0) {
    // torch recomputes the last 16 values from fresh uniforms.
    const tail = numel - 16;
    for (let i = 0; i < 16; i++) data[tail + i] = gen.uniformFloat32();
    normalFill16(data, tail);
  }
  return data;
}
