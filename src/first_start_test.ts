/**
 * The README's first command on a fresh clone: `deno task serve` in a copy of this tree that has no
 * `node_modules` yet, with Deno's package cache warm (as after any earlier run on the machine). The
 * first start installs packages while the model's worker starts, which once left the worker
 * without a message handler and the server loading forever; it must be healthy within 60 s, print
 * no install noise, and install none of the development-only packages.
 */
import assert from "node:assert/strict";

const ROOT = new URL("..", import.meta.url).pathname;
/** Packages only tests, benchmarks and tooling use; `serve` must not install them. */
const DEVELOPMENT_ONLY = [
  "playwright-core",
  "axe-core",
  "typescript",
  "openai",
  "kubernetes-models",
  "fast-check",
];

/** Copies the files git would commit (tracked, and untracked but not ignored) into `dir`. */
async function copyTree(dir: string): Promise<void> {
  const list = await new Deno.Command("git", {
    args: ["ls-files", "-z", "--cached", "--others", "--exclude-standard"],
    cwd: ROOT,
    stdout: "piped",
  }).output();
  assert.ok(list.success, "git ls-files failed");
  const files = new TextDecoder().decode(list.stdout).split("\0").filter((f) => f !== "");
  for (const file of files) {
    const from = `${ROOT}${file}`;
    // A file deleted in the work tree is still listed until the deletion is staged.
    const info = await Deno.stat(from).catch(() => undefined);
    if (!info?.isFile) continue;
    const to = `${dir}/${file}`;
    await Deno.mkdir(to.slice(0, to.lastIndexOf("/")), { recursive: true });
    await Deno.copyFile(from, to);
  }
}

Deno.test("first start: `deno task serve` in a fresh clone is healthy within 60 s, quietly", async () => {
  const dir = await Deno.makeTempDir({ prefix: "denoise-fresh-clone-" });
  let child: Deno.ChildProcess | undefined;
  try {
    await copyTree(dir);
    assert.ok(!(await Deno.stat(`${dir}/node_modules`).catch(() => undefined)));
    child = new Deno.Command(Deno.execPath(), {
      args: ["task", "serve", "--port", "0"],
      cwd: dir,
      stdout: "piped",
      stderr: "piped",
      env: { NO_COLOR: "1" },
    }).spawn();
    let log = "";
    const decoder = new TextDecoder();
    const pumps = [child.stdout, child.stderr].map(async (stream) => {
      for await (const chunk of stream) log += decoder.decode(chunk);
    });
    const started = Date.now();
    let healthy = false;
    while (!healthy && Date.now() - started < 60_000) {
      await new Promise((r) => setTimeout(r, 200));
      const url = log.match(/listening on (http:\/\/[\w.:[\]-]+)/)?.[1];
      if (!url) continue;
      const res = await fetch(`${url}/health`);
      await res.body?.cancel();
      healthy = res.status === 200;
    }
    child.kill("SIGTERM");
    await child.status;
    await Promise.all(pumps);
    assert.ok(healthy, `not healthy within 60 s:\n${log}`);
    for (const noise of ["Ignored build scripts", "Download ", "Initialize "]) {
      assert.ok(!log.includes(noise), `the first start prints '${noise}':\n${log}`);
    }
    const installed = [...Deno.readDirSync(`${dir}/node_modules/.deno`)].map((e) => e.name);
    for (const name of DEVELOPMENT_ONLY) {
      const found = installed.filter((entry) => entry.startsWith(`${name}@`));
      assert.deepEqual(found, [], `serve installed a development-only package`);
    }
  } finally {
    try {
      child?.kill("SIGKILL");
    } catch {
      // already exited
    }
    await Deno.remove(dir, { recursive: true });
  }
});
