/**
 * `deno task container:test`: builds the Containerfile with podman (on a Deno base image made from
 * Debian packages, as no registry is reachable here), starts it, waits until ready, runs
 * `deno task conformance` against it, sends SIGTERM while requests are in flight and checks that
 * each was answered and the container exited 0, then removes what it made. Prints the figures
 * (build time, image size, time to ready, drain). Needs root, podman, runc and mmdebstrap.
 *
 * @module
 */
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
const TAG = "localhost/denoise:test";
const names = { debian: "localhost/denoise-debian:bookworm", base: "localhost/denoise-base:test" };

try {
  for (const tool of ["podman", "mmdebstrap", "/usr/sbin/runc"]) {
    await sh(`command -v ${tool}`, { quiet: true }).catch(() => {
      console.log(
        `container test skipped: ${tool} is not installed (apt-get install podman runc mmdebstrap)`,
      );
      Deno.exit(0);
    });
  }
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
    `${PODMAN} build --network host -t ${names.base} -f ${ROOT}deploy/base.Containerfile ${WORK}/base`,
  );
  console.log(`base image: ${seconds(t)} s`);

  t = performance.now();
  await sh(
    `${PODMAN} build --network host --build-arg BASE_IMAGE=${names.base} -t ${TAG} -f ${ROOT}Containerfile ${ROOT}`,
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

  // A bad variable: one line, exit 2, no crash loop of stack traces.
  const bad = await new Deno.Command("bash", {
    args: ["-c", `${PODMAN} run --rm --network host -e PORT=x ${TAG}`],
    env,
    stdout: "piped",
    stderr: "piped",
  }).output();
  const badText = new TextDecoder().decode(bad.stderr).trim();
  if (bad.code !== 2 || !/^error: PORT must be an integer/.test(badText)) {
    throw new Error(`a bad PORT gave exit ${bad.code}: ${badText}`);
  }
  console.log(`bad PORT: exit 2, "${badText.split("\n")[0]}"`);

  const port = 18000 + Math.floor(Math.random() * 1000);
  const url = `http://127.0.0.1:${port}`;
  t = performance.now();
  await sh(`${PODMAN} run -d --name denoise-test --network host -e PORT=${port} ${TAG}`);
  for (;;) {
    const ok = await fetch(`${url}/health`).then((r) => r.ok).catch(() => false);
    if (ok) break;
    if (performance.now() - t > 60_000) throw new Error(await sh(`${PODMAN} logs denoise-test`));
    await new Promise((r) => setTimeout(r, 100));
  }
  console.log(`ready ${seconds(t)} s after podman run`);

  await sh(`cd ${ROOT} && deno task conformance --base-url ${url}`);
  console.log("conformance: passed against the container");

  const inFlight = Array.from({ length: 4 }, (_, i) =>
    fetch(`${url}/v1/images/generations`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ prompt: `p${i}`, size: "512x512", seed: i }),
    }).then((r) => r.status));
  await new Promise((r) => setTimeout(r, 50));
  t = performance.now();
  await sh(`${PODMAN} kill --signal TERM denoise-test`);
  const statuses = await Promise.all(inFlight);
  const exit = (await sh(`${PODMAN} wait denoise-test`)).trim().split("\n").at(-1);
  console.log(
    `SIGTERM with 4 requests in flight: answered ${statuses.join(", ")}; exit ${exit} after ${
      seconds(t)
    } s`,
  );
  if (statuses.some((s) => s !== 200) || exit !== "0") throw new Error("drain failed");
  console.log("container test passed");
} finally {
  await sh(`${PODMAN} rm -f denoise-test`, { quiet: true }).catch(() => {});
  await sh(`${PODMAN} rmi -f ${TAG} ${names.base}`, { quiet: true }).catch(() => {});
  await Deno.remove(WORK, { recursive: true });
}
