import assert from "node:assert/strict";
import { Mt19937 } from "../random.ts";
import { calculateShift, createScheduler, type SchedulerConfig } from "./mod.ts";
import { alphasCumprod, linspace } from "./scheduler.ts";

// Stable Diffusion's noise schedule (scheduler_config.json of SD 1.x / 2.x / SD-Turbo).
const SD: SchedulerConfig = {
  beta_start: 0.00085,
  beta_end: 0.012,
  beta_schedule: "scaled_linear",
  num_train_timesteps: 1000,
  steps_offset: 1,
  set_alpha_to_one: false,
  clip_sample: false,
};

function assertClose(actual: readonly number[], expected: readonly number[], tol: number) {
  assert.equal(actual.length, expected.length, `length ${actual.length} != ${expected.length}`);
  actual.forEach((a, i) =>
    assert.ok(Math.abs(a - expected[i]) <= tol, `[${i}] ${a} != ${expected[i]} (±${tol})`)
  );
}

Deno.test("EulerDiscrete trailing spacing matches diffusers for 4 steps", () => {
  const run = createScheduler({
    ...SD,
    _class_name: "EulerDiscreteScheduler",
    timestep_spacing: "trailing",
  })
    .setTimesteps(4);
  assert.deepEqual(run.timesteps, [999, 749, 499, 249]);
  assertClose(run.sigmas, [14.6146, 4.0817, 1.6129, 0.6932, 0], 1e-4);
  assertClose([run.initNoiseSigma], [14.6146], 1e-4);
});

Deno.test("EulerDiscrete leading spacing adds steps_offset and scales init noise by √(σ²+1)", () => {
  const run = createScheduler({
    ...SD,
    _class_name: "EulerDiscreteScheduler",
    timestep_spacing: "leading",
  })
    .setTimesteps(50);
  assert.equal(run.timesteps[0], 981);
  assert.equal(run.timesteps.at(-1), 1);
  assertClose([run.initNoiseSigma], [Math.hypot(run.sigmas[0], 1)], 1e-6);
});

Deno.test("EulerDiscrete linspace spacing spans 999 → 0", () => {
  const run = createScheduler({ ...SD, _class_name: "EulerDiscreteScheduler" }).setTimesteps(3);
  assertClose(run.timesteps, [999, 499.5, 0], 1e-4);
  assertClose([run.sigmas[0]], [14.6146], 1e-4);
});

Deno.test("rescale_betas_zero_snr: ᾱ ends at 0, Euler starts at σ ≈ 4096 (diffusers' 2⁻²⁴ clamp)", () => {
  const config = { ...SD, rescale_betas_zero_snr: true };
  const ac = alphasCumprod(config);
  // Float64 reference: algorithm 1 of Lin et al. on SD's betas, computed with torch in float64.
  assertClose([ac[0], ac[1], ac[500], ac[998]], [
    0.99915,
    0.9982334461,
    0.2410187828,
    1.967888e-7,
  ], 1e-6);
  assert.equal(ac[999], 0);
  const run = createScheduler({
    ...config,
    _class_name: "EulerDiscreteScheduler",
    prediction_type: "v_prediction",
  }).setTimesteps(20);
  assertClose(run.sigmas.slice(0, 4), [4096, 38.19751, 17.05467, 10.20733], 2e-3);
  assert.equal(run.initNoiseSigma, run.sigmas[0]);
  // v-prediction at σ_max: x̂₀ is −v (the input carries no image).
  const x0 = run.predictOriginal(new Float32Array([0.5]), 0, new Float32Array([4096 * 0.3]));
  assertClose(Array.from(x0), [-0.5], 1e-3);
});

Deno.test("Euler step with ε-prediction moves x to x + ε·(σ_next − σ)", () => {
  const run = createScheduler({
    ...SD,
    _class_name: "EulerDiscreteScheduler",
    timestep_spacing: "trailing",
  })
    .setTimesteps(4);
  const x = new Float32Array([1, -2]), eps = new Float32Array([0.5, 0.25]);
  const next = run.step(eps, 0, x, new Mt19937(0));
  const dt = run.sigmas[1] - run.sigmas[0];
  assertClose(Array.from(next), [1 + 0.5 * dt, -2 + 0.25 * dt], 1e-5);
  assertClose(Array.from(run.scaleModelInput(x, 0)), [
    1 / Math.hypot(14.6146, 1),
    -2 / Math.hypot(14.6146, 1),
  ], 1e-6);
});

Deno.test("EulerAncestral draws its noise from the request generator", () => {
  const s = createScheduler({ ...SD, _class_name: "EulerAncestralDiscreteScheduler" });
  const run = s.setTimesteps(2);
  const x = new Float32Array(32).fill(1), eps = new Float32Array(32).fill(0.1);
  const a = run.step(eps, 0, x, new Mt19937(1));
  const b = run.step(eps, 0, x, new Mt19937(1));
  const c = run.step(eps, 0, x, new Mt19937(2));
  assert.deepEqual(a, b);
  assert.notDeepEqual(a, c);
  // The last step goes to σ=0: σ_up = 0, so it is deterministic.
  assert.deepEqual(run.step(eps, 1, x, new Mt19937(1)), run.step(eps, 1, x, new Mt19937(9)));
});

Deno.test("DDIM leading spacing with offset gives 981…1 and reaches x̂₀ at the end", () => {
  const run = createScheduler({ ...SD, _class_name: "DDIMScheduler" }).setTimesteps(50);
  assert.equal(run.timesteps.length, 50);
  assert.equal(run.timesteps[0], 981);
  assert.equal(run.timesteps[1], 961);
  assert.equal(run.timesteps.at(-1), 1);
  assert.equal(run.initNoiseSigma, 1);
});

Deno.test("LCM picks the documented 4-step timesteps 999, 759, 499, 259", () => {
  const run = createScheduler({ ...SD, _class_name: "LCMScheduler", original_inference_steps: 50 })
    .setTimesteps(4);
  assert.deepEqual(run.timesteps, [999, 759, 499, 259]);
  // Last step returns the denoised estimate without fresh noise.
  const x = new Float32Array(16).fill(0.3), eps = new Float32Array(16).fill(0.1);
  assert.deepEqual(run.step(eps, 3, x, new Mt19937(1)), run.step(eps, 3, x, new Mt19937(2)));
});

Deno.test("FlowMatch with Qwen-Image's config at 1024², 50 steps matches diffusers", () => {
  const config: SchedulerConfig = {
    _class_name: "FlowMatchEulerDiscreteScheduler",
    base_image_seq_len: 256,
    max_image_seq_len: 8192,
    base_shift: 0.5,
    max_shift: 0.9,
    shift: 1.0,
    shift_terminal: 0.02,
    use_dynamic_shifting: true,
    time_shift_type: "exponential",
    num_train_timesteps: 1000,
  };
  const mu = calculateShift(4096, config);
  assertClose([mu], [0.693548], 1e-6);
  const run = createScheduler(config).setTimesteps(50, { sigmas: linspace(1, 1 / 50, 50), mu });
  assertClose(run.sigmas.slice(0, 3), [1.0, 0.98970, 0.97919], 1e-5);
  assertClose(run.sigmas.slice(-3), [0.058476, 0.02, 0], 1e-6);
  assertClose([run.timesteps[0]], [1000], 1e-3);
});

Deno.test("FlowMatch with shift_terminal and one step goes from σ 1 to 0 (diffusers: NaN)", () => {
  const config: SchedulerConfig = {
    _class_name: "FlowMatchEulerDiscreteScheduler",
    shift_terminal: 0.02,
    use_dynamic_shifting: true,
    time_shift_type: "exponential",
  };
  const run = createScheduler(config).setTimesteps(1, { sigmas: linspace(1, 1, 1), mu: 0.69 });
  assert.deepEqual(run.sigmas, [1, 0]);
  assert.deepEqual(run.timesteps, [1000]);
});

Deno.test("FlowMatch with Z-Image-Turbo's static shift 3 gives the 8-step sigmas", () => {
  const run = createScheduler({ _class_name: "FlowMatchEulerDiscreteScheduler", shift: 3.0 })
    .setTimesteps(8, { sigmas: linspace(1, 1 / 8, 8) });
  assertClose(run.sigmas, [1, 0.95455, 0.9, 0.83333, 0.75, 0.64286, 0.5, 0.3, 0], 1e-5);
  const x = new Float32Array([1]), v = new Float32Array([2]);
  assertClose(Array.from(run.step(v, 0, x, new Mt19937(0))), [1 + 2 * (0.95455 - 1)], 1e-5);
});

Deno.test("FlowMatch with dynamic shifting refuses to run without mu", () => {
  assert.throws(
    () =>
      createScheduler({
        _class_name: "FlowMatchEulerDiscreteScheduler",
        use_dynamic_shifting: true,
      })
        .setTimesteps(4),
    /needs mu/,
  );
});

Deno.test("createScheduler swaps algorithms by short name and rejects unknown ones", () => {
  assert.equal(
    createScheduler({ ...SD, _class_name: "PNDMScheduler" }, "euler_a").name,
    "EulerAncestralDiscreteScheduler",
  );
  assert.throws(
    () => createScheduler({ _class_name: "PNDMScheduler" }),
    /Unsupported scheduler 'PNDMScheduler'/,
  );
  assert.throws(
    () => createScheduler({ ...SD, _class_name: "EulerDiscreteScheduler" }).setTimesteps(0),
    RangeError,
  );
  assert.throws(
    () =>
      createScheduler({ ...SD, _class_name: "EulerDiscreteScheduler", prediction_type: "x" })
        .setTimesteps(1).step(new Float32Array(1), 0, new Float32Array(1), new Mt19937(0)),
    /prediction_type 'x'/,
  );
});

Deno.test("modelOutputFor inverts predictOriginal, for every scheduler and prediction type", () => {
  const sample = Float32Array.of(0.7, -1.3, 2.1), output = Float32Array.of(0.4, 0.9, -0.6);
  for (
    const _class_name of [
      "EulerDiscreteScheduler",
      "EulerAncestralDiscreteScheduler",
      "DDIMScheduler",
      "LCMScheduler",
      "FlowMatchEulerDiscreteScheduler",
    ]
  ) {
    // Flow matching has one parameterisation, the velocity.
    const types = _class_name.startsWith("Flow")
      ? [undefined]
      : ["epsilon", "v_prediction", "sample"];
    for (const prediction_type of types) {
      const run = createScheduler({ ...SD, _class_name, prediction_type }).setTimesteps(8);
      for (const i of [0, 3, 7]) {
        const x0 = run.predictOriginal(output, i, sample);
        const back = run.modelOutputFor(x0, i, sample);
        assertClose(Array.from(back), Array.from(output), 1e-3);
      }
    }
  }
});
