/**
 * The deployment files, checked without a cluster: the Kubernetes manifests against the API's
 * JSON schemas (kubernetes-models, @kubernetes-models/keda), their settings against the server's
 * own flags, and the container's runtime dependency list against the server's module graph.
 */
import assert from "node:assert/strict";
import { PersistentVolumeClaim } from "kubernetes-models/v1/PersistentVolumeClaim";
import { Service } from "kubernetes-models/v1/Service";
import { Deployment } from "kubernetes-models/apps/v1/Deployment";
import { ScaledObject } from "@kubernetes-models/keda/keda.sh/v1alpha1/ScaledObject";
import { parseAllDocuments } from "yaml";
import { envName, FLAGS } from "../src/cli.ts";

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
      args: ["info", "--json", new URL(entry, import.meta.url).pathname],
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
  ]);
  assert.ok(needed.has("onnxruntime-node") && needed.has("hono"), [...needed].join(" "));
  const installed = await packages("./runtime_deps.ts");
  assert.deepEqual([...needed].filter((p) => !installed.has(p)), []);
  for (const dev of ["openai", "typescript", "playwright-core", "fast-check"]) {
    assert.ok(!installed.has(dev), `${dev} is not for the runtime layer`);
  }
});
