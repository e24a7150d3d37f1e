/**
 * `deno task container:test [--port N] [--name NAME] [--skip-missing]`: builds the Containerfile
 * with podman in Docker format (OCI images drop `HEALTHCHECK`; on a Deno base image made from
 * Debian packages, as no registry is reachable here), checks that the image keeps its healthcheck,
 * starts it, waits until ready, runs the healthcheck and `deno task conformance` against it, sends
 * SIGTERM while requests are in flight and checks that each was answered and the container exited
 * 0, then removes what it made. Prints the figures (build time, image size, time to ready, drain).
 * Needs root, podman, runc and mmdebstrap; without them it fails, or passes as skipped with
 * `--skip-missing`.
 *
 * `--name` names the container and, with `-base` added, its two images (default
 * `denoise-test-<pid>-<random>`, so that runs side by side do not meet); `--port` is the port it
 * listens on, on the host's loopback (default: a free one).
 *
 * @module
 */
import { parseFlags } from "../conformance/args.ts";
import { exitForMissingTool } from "./missing_tool.ts";

const HELP = `Usage: deno task container:test [options]
  --port N          the port the container listens on, on 127.0.0.1 (default: a free one)
  --name NAME       the container's name, and its images' (default denoise-test-<pid>-<random>)
  --skip-missing    pass, saying so, when podman, runc or mmdebstrap is not installed`;

/** A run's settings. */
export interface ContainerCheckOptions {
  /** Undefined: a free port, chosen when the container starts. */
  port?: number;
  name: string;
  skipMissing: boolean;
}

/** The run's settings from its flags' values; throws an error with a one-line message. */
export function containerCheckOptions(
  values: { port?: string; name?: string; "skip-missing"?: boolean },
): ContainerCheckOptions {
  const port = values.port === undefined ? undefined : Number(values.port);
  if (port !== undefined && !(/^\d+$/.test(values.port!) && port >= 1 && port <= 65535)) {
    throw new Error(`--port must be an integer 1–65535, got "${values.port}"`);
  }
  const name = values.name ?? `denoise-test-${Deno.pid}-${crypto.randomUUID().slice(0, 8)}`;
  // It names images too, whose names podman takes in lower case only.
  if (!/^[a-z0-9][a-z0-9_.-]{0,127}$/.test(name)) {
    throw new Error(
      `--name must be lower-case letters, digits, '.', '_' or '-' (it names the container and its images), got "${name}"`,
    );
  }
  return { port, name, skipMissing: values["skip-missing"] ?? false };
}

/** The healthcheck podman records for an image (`podman image inspect` JSON). */
interface Healthcheck {
  Test: string[];
  Interval?: number;
  Timeout?: number;
  StartPeriod?: number;
}

/**
 * The image's healthcheck from `podman image inspect` output, or why it is not the Containerfile's
 * (`undefined` when it is): a `/health` probe every 10 s. An OCI-format build has none.
 */
export function healthcheckProblem(inspectJson: string): string | undefined {
  const [image] = JSON.parse(inspectJson) as { Healthcheck?: Healthcheck }[];
  const check = image?.Healthcheck;
  if (!check?.Test?.length) {
    return "the image has no healthcheck (an OCI-format build drops it: build with --format docker)";
  }
  if (check.Test[0] !== "CMD" || !check.Test.some((part) => part.includes("/health"))) {
    return `the healthcheck does not probe /health: ${JSON.stringify(check.Test)}`;
  }
  if (check.Interval !== 10e9) {
    return `the healthcheck's interval is ${check.Interval} ns, not 10 s`;
  }
  return undefined;
}

/** Requests the server holds, running or queued (`vllm:num_requests_running` + `_waiting`). */
async function accepted(url: string): Promise<number> {
  const text = await (await fetch(`${url}/metrics`)).text();
  return [...text.matchAll(/^vllm:num_requests_(?:running|waiting)\{[^}]*\} (\S+)$/gm)]
    .reduce((sum, m) => sum + Number(m[1]), 0);
}

/** A port nothing on the host's loopback listens on now. */
function freePort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const { port } = listener.addr as Deno.NetAddr;
  listener.close();
  return port;
}

async function main({ port: chosenPort, name, skipMissing }: ContainerCheckOptions) {
  for (const tool of ["podman", "mmdebstrap", "/usr/sbin/runc"]) {
    const found = await new Deno.Command("bash", { args: ["-c", `command -v ${tool}`] }).output();
    if (!found.success) {
      exitForMissingTool(
        "container test",
        tool,
        "apt-get install podman runc mmdebstrap",
        skipMissing,
      );
    }
  }
  const TAG = `localhost/${name}:latest`;
  // The Debian image is kept between runs (mmdebstrap takes a while); the rest goes at the end.
  const names = {
    debian: "localhost/denoise-debian:bookworm",
    base: `localhost/${name}-base:latest`,
  };
  // What the run makes it removes at the end: never a container or image that was there before.
  for (const [kind, what] of [["container", name], ["image", TAG], ["image", names.base]]) {
    if ((await new Deno.Command("podman", { args: [kind, "exists", what] }).output()).success) {
      console.error(`error: a podman ${kind} named ${what} exists already; choose another --name`);
      Deno.exit(2);
    }
  }
  // With host networking a busy port would be another server's, whose /health would answer.
  const port = chosenPort ?? freePort();
  try {
    Deno.listen({ hostname: "127.0.0.1", port }).close();
  } catch {
    console.error(`error: port ${port} is in use; choose another --port`);
    Deno.exit(2);
  }

  const ROOT = new URL("..", import.meta.url).pathname;
  const WORK = await Deno.makeTempDir({ prefix: "denoise-container-" });
  const CONF = `${WORK}/containers.conf`;
  // This machine's cgroups are in hybrid mode and raising RLIMIT_NOFILE is not permitted.
  await Deno.writeTextFile(CONF, "[containers]\ndefault_ulimits = []\n");
  const env = { CONTAINERS_CONF: CONF };

  async function sh(command: string, options: { quiet?: boolean } = {}): Promise<string> {
    const out = await new Deno.Command("bash", {
      args: ["-c", command],
      env,
      stdout: "piped",
      stderr: "piped",
    }).output();
    const text = new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr);
    if (!out.success) throw new Error(`${command}\n${text.slice(-4000)}`);
    if (!options.quiet) console.log(`$ ${command.split("\n")[0]}`);
    return text;
  }

  const seconds = (t: number) => ((performance.now() - t) / 1000).toFixed(1);
  const PODMAN = "podman --runtime /usr/sbin/runc";

  try {
    let t = performance.now();
    if (!(await sh(`${PODMAN} images -q ${names.debian}`, { quiet: true })).trim()) {
      await sh(
        `mmdebstrap --variant=minbase --include=ca-certificates,passwd bookworm ${WORK}/rootfs.tar`,
      );
      await sh(`${PODMAN} import ${WORK}/rootfs.tar ${names.debian}`);
    }
    await Deno.mkdir(`${WORK}/base`);
    await Deno.copyFile(Deno.execPath(), `${WORK}/base/deno`);
    await Deno.copyFile("/etc/ssl/certs/ca-certificates.crt", `${WORK}/base/ca-certificates.crt`);
    await sh(
      `${PODMAN} build --format docker --network host -t ${names.base} -f ${ROOT}deploy/base.Containerfile ${WORK}/base`,
    );
    console.log(`base image: ${seconds(t)} s`);

    t = performance.now();
    await sh(
      `${PODMAN} build --format docker --network host --build-arg BASE_IMAGE=${names.base} -t ${TAG} -f ${ROOT}Containerfile ${ROOT}`,
    );
    const inspect = await sh(`${PODMAN} image inspect ${TAG}`);
    const problem = healthcheckProblem(inspect);
    if (problem) throw new Error(problem);
    const { Test, Interval, Timeout, StartPeriod } = JSON.parse(inspect)[0].Healthcheck;
    console.log(
      `healthcheck in the image: ${JSON.stringify(Test)}, every ${Interval / 1e9} s, timeout ${
        Timeout / 1e9
      } s, start period ${StartPeriod / 1e9} s`,
    );
    const size = Number((await sh(`${PODMAN} image inspect ${TAG} --format '{{.Size}}'`)).trim());
    const baseSize = Number(
      (await sh(`${PODMAN} image inspect ${names.base} --format '{{.Size}}'`)).trim(),
    );
    console.log(
      `image: built in ${seconds(t)} s; ${(size / 1e6).toFixed(0)} MB (${
        ((size - baseSize) / 1e6).toFixed(0)
      } MB over the Deno base)`,
    );

    // A bad variable: one line, exit 2, no crash loop of stack traces. (Without the healthcheck:
    // podman's own complaint that it has no systemd to schedule it would share stderr.)
    const bad = await new Deno.Command("bash", {
      args: ["-c", `${PODMAN} run --rm --no-healthcheck --network host -e PORT=x ${TAG}`],
      env,
      stdout: "piped",
      stderr: "piped",
    }).output();
    const badText = new TextDecoder().decode(bad.stderr).trim();
    if (bad.code !== 2 || !/^error: PORT must be an integer/.test(badText)) {
      throw new Error(`a bad PORT gave exit ${bad.code}: ${badText}`);
    }
    console.log(`bad PORT: exit 2, "${badText.split("\n")[0]}"`);

    const url = `http://127.0.0.1:${port}`;
    t = performance.now();
    // Host networking (what this machine allows), so the server listens on loopback only.
    await sh(
      `${PODMAN} run -d --name ${name} --network host -e PORT=${port} -e DENOISE_HOST=127.0.0.1 ${TAG}`,
    );
    for (;;) {
      const ok = await fetch(`${url}/health`).then((r) => r.ok).catch(() => false);
      if (ok) break;
      if (performance.now() - t > 60_000) throw new Error(await sh(`${PODMAN} logs ${name}`));
      await new Promise((r) => setTimeout(r, 100));
    }
    console.log(`ready ${seconds(t)} s after podman run, on ${url}`);
    // The image's own HEALTHCHECK command, run in the container (exit 0: healthy).
    await sh(`${PODMAN} healthcheck run ${name}`);
    console.log("podman healthcheck run: healthy");

    await sh(`cd ${ROOT} && ${Deno.execPath()} task conformance --base-url ${url}`);
    console.log("conformance: passed against the container");

    const inFlight = Array.from({ length: 4 }, (_, i) =>
      fetch(`${url}/v1/images/generations`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ prompt: `p${i}`, size: "256x256", seed: i }),
      }).then((r) => r.status));
    // SIGTERM once the server holds all four (running or queued), not after a guessed delay.
    for (t = performance.now(); (await accepted(url)) < 4;) {
      if (performance.now() - t > 30_000) {
        throw new Error("the 4 requests never reached the server");
      }
      await new Promise((r) => setTimeout(r, 20));
    }
    t = performance.now();
    await sh(`${PODMAN} kill --signal TERM ${name}`);
    const statuses = await Promise.all(inFlight);
    const exit = (await sh(`${PODMAN} wait ${name}`)).trim().split("\n").at(-1);
    console.log(
      `SIGTERM with 4 requests in flight: answered ${statuses.join(", ")}; exit ${exit} after ${
        seconds(t)
      } s`,
    );
    if (statuses.some((s) => s !== 200) || exit !== "0") throw new Error("drain failed");
    console.log("container test passed");
  } finally {
    await sh(`${PODMAN} rm -f ${name}`, { quiet: true }).catch(() => {});
    await sh(`${PODMAN} rmi -f ${TAG} ${names.base}`, { quiet: true }).catch(() => {});
    await Deno.remove(WORK, { recursive: true });
  }
}

if (import.meta.main) {
  const values = parseFlags({
    port: { type: "string" },
    name: { type: "string" },
    "skip-missing": { type: "boolean", default: false },
    help: { type: "boolean", short: "h", default: false },
  });
  if (values.help) {
    console.log(HELP);
    Deno.exit(0);
  }
  let options: ContainerCheckOptions;
  try {
    options = containerCheckOptions(values);
  } catch (e) {
    console.error(`error: ${(e as Error).message}\nRun with --help for the options.`);
    Deno.exit(2);
  }
  await main(options);
}
