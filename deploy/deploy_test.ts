/**
 * The deployment files, checked without a cluster: the Kubernetes manifests against the API's
 * JSON schemas (kubernetes-models, @kubernetes-models/keda), their settings against the server's
 * own flags, the container's runtime dependency list against the server's module graph, and the
 * container and scale-out checks' command lines and healthcheck test.
 */
import assert from "node:assert/strict";
import process from "node:process";
import { parseAllDocuments } from "yaml";
import { envName, FLAGS } from "../src/cli.ts";
import { containerCheckOptions, healthcheckProblem } from "./container_check.ts";

// The models' validator loads ajv-formats-draft2019, which requires Node's deprecated built-in
// punycode; Node would print its DEP0040 warning on every run. Only this load is kept quiet
// (`process.noDeprecation` is Node's documented switch; @types/node lacks it).
const node = process as typeof process & { noDeprecation: boolean };
node.noDeprecation = true;
const [{ PersistentVolumeClaim }, { Service }, { Deployment }, { ScaledObject }] = await Promise
  .all([
    import("kubernetes-models/v1/PersistentVolumeClaim"),
    import("kubernetes-models/v1/Service"),
    import("kubernetes-models/apps/v1/Deployment"),
    import("@kubernetes-models/keda/keda.sh/v1alpha1/ScaledObject"),
  ]);
node.noDeprecation = false;

const MODELS: Record<string, new (data: never) => { validate(): void }> = {
  PersistentVolumeClaim,
  Service,
  Deployment,
  ScaledObject,
};

const manifests = parseAllDocuments(
  await Deno.readTextFile(new URL("./kubernetes/denoise.yaml", import.meta.url)),
).map((d) => d.toJSON());

Deno.test("the Kubernetes manifests validate against the API schemas", () => {
  assert.deepEqual(manifests.map((m) => m.kind).sort(), Object.keys(MODELS).sort());
  for (const m of manifests) new MODELS[m.kind](m as never).validate();
  // The validator does catch mistakes.
  const broken = structuredClone(manifests.find((m) => m.kind === "Deployment"));
  broken.spec.template.spec.containers[0].ports[0].containerPort = "http";
  assert.throws(() => new Deployment(broken).validate(), /containerPort/);
});

Deno.test("the Deployment matches the server: probes, drain, known variables; KEDA scales on the queue", () => {
  const deployment = manifests.find((m) => m.kind === "Deployment");
  const pod = deployment.spec.template.spec;
  const container = pod.containers[0];
  assert.equal(container.readinessProbe.httpGet.path, "/health");
  assert.equal(container.livenessProbe.httpGet.path, "/ping");
  const env = Object.fromEntries(
    container.env.filter((e: { value?: string }) => e.value).map((
      e: { name: string; value: string },
    ) => [e.name, e.value]),
  );
  assert.ok(pod.terminationGracePeriodSeconds > Number(env.DENOISE_SHUTDOWN_TIMEOUT));
  const known = new Set([...FLAGS.map(envName), "HF_TOKEN"]);
  for (const e of container.env) assert.ok(known.has(e.name), `unknown variable ${e.name}`);
  const keda = manifests.find((m) => m.kind === "ScaledObject");
  assert.equal(keda.spec.scaleTargetRef.name, deployment.metadata.name);
  assert.match(
    keda.spec.triggers[0].metadata.query,
    /vllm:num_requests_waiting\{model_name="[^"]+"\}/,
  );
  assert.ok(keda.spec.triggers[0].metadata.query.includes(env.DENOISE_MODEL));
});

Deno.test("the container's dependency layer holds every npm package the server loads", async () => {
  const packages = async (entry: string) => {
    const out = await new Deno.Command(Deno.execPath(), {
      // npm: specifiers, not node_modules paths: resolved from the cache, whatever is installed.
      args: ["info", "--json", "--node-modules-dir=none", new URL(entry, import.meta.url).pathname],
      stdout: "piped",
    }).output();
    const info = JSON.parse(new TextDecoder().decode(out.stdout));
    return new Set(
      (info.modules as { specifier: string }[]).map((m) => m.specifier)
        .filter((s) => s.startsWith("npm:"))
        .map((s) => s.replace(/^npm:\/?/, "").replace(/^(@[^/]+\/[^@/]+|[^@/]+)@.*$/, "$1")),
    );
  };
  const needed = new Set([
    ...await packages("../src/main.ts"),
    ...await packages("../src/engine/worker.ts"),
    ...await packages("../compute/image/png_stripe_worker.ts"),
    ...await packages("../compute/model/convert_worker.ts"),
  ]);
  assert.ok(needed.has("onnxruntime-node") && needed.has("hono"), [...needed].join(" "));
  const installed = await packages("./runtime_deps.ts");
  assert.deepEqual([...needed].filter((p) => !installed.has(p)), []);
  for (const dev of ["openai", "typescript", "playwright-core", "fast-check"]) {
    assert.ok(!installed.has(dev), `${dev} is not for the runtime layer`);
  }
});

Deno.test("container:test takes --port and --name, with a name of its own by default", () => {
  const a = containerCheckOptions({}), b = containerCheckOptions({});
  assert.match(a.name, /^denoise-test-\d+-[0-9a-f]{8}$/);
  assert.notEqual(a.name, b.name);
  assert.equal(a.port, undefined);
  assert.equal(a.skipMissing, false);
  assert.deepEqual(
    containerCheckOptions({ port: "18123", name: "ci-7", "skip-missing": true }),
    { port: 18123, name: "ci-7", skipMissing: true },
  );
  for (const port of ["0", "65536", "x", "80.5", ""]) {
    assert.throws(() => containerCheckOptions({ port }), /--port must be an integer 1–65535/);
  }
  for (const name of ["Denoise", "-x", "a/b", "a b", ""]) {
    assert.throws(() => containerCheckOptions({ name }), /--name must be lower-case letters/);
  }
});

Deno.test("container:test finds the Containerfile's healthcheck in podman's inspect output, or says it is missing", async () => {
  const containerfile = await Deno.readTextFile(new URL("../Containerfile", import.meta.url));
  // The image's check, as `podman image inspect` shows a Docker-format build of this Containerfile.
  const command = containerfile.match(/^ {2}CMD (\[.*\])$/m)![1];
  assert.match(containerfile, /^HEALTHCHECK --interval=10s /m);
  const inspect = (healthcheck?: object) => JSON.stringify([{ Id: "x", Healthcheck: healthcheck }]);
  const check = { Test: ["CMD", ...JSON.parse(command)], Interval: 10e9, Timeout: 3e9 };
  assert.equal(healthcheckProblem(inspect(check)), undefined);
  // An OCI-format build (podman's default) has none.
  assert.match(healthcheckProblem(inspect())!, /no healthcheck .* --format docker/);
  assert.match(
    healthcheckProblem(inspect({ ...check, Test: ["CMD", "true"] }))!,
    /does not probe \/health/,
  );
  assert.match(healthcheckProblem(inspect({ ...check, Interval: 30e9 }))!, /interval/);
});

Deno.test("the documented build keeps the healthcheck and names its base in full", async () => {
  const read = (path: string) => Deno.readTextFile(new URL(path, import.meta.url));
  // Debian's podman has no short-name search registries: "denoland/deno:…" fails at once.
  assert.match(await read("../Containerfile"), /^ARG BASE_IMAGE=docker\.io\/denoland\/deno:/m);
  for (const doc of ["../README.md", "../docs/deploy.md", "../Containerfile"]) {
    const builds = (await read(doc)).match(/podman build .*/g) ?? [];
    assert.ok(builds.length > 0, doc);
    for (const line of builds) assert.match(line, /--format docker/, `${doc}: ${line}`);
  }
});

Deno.test("scaleout:test without nginx fails, saying so, unless told to skip", async () => {
  const run = async (...args: string[]) => {
    const out = await new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", new URL("./scaleout_check.ts", import.meta.url).pathname, ...args],
      stdout: "piped",
      stderr: "piped",
    }).output();
    const text = new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr);
    return { code: out.code, text };
  };
  const missing = "/nonexistent/nginx";
  const failed = await run("--nginx", missing);
  assert.equal(failed.code, 1, failed.text);
  assert.match(failed.text, /\/nonexistent\/nginx is not installed .*failed .*--skip-missing/);
  const skipped = await run("--nginx", missing, "--skip-missing");
  assert.equal(skipped.code, 0, skipped.text);
  assert.match(skipped.text, /is not installed .*; skipped \(--skip-missing\)/);
});
