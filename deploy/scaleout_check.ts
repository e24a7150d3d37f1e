/**
 * `deno task scaleout:test`: two replicas behind a real load balancer (Debian's nginx, round
 * robin) sharing an image directory. Runs `deno task conformance` through the balancer, checks that
 * `response_format: url` images are served whichever replica answers, then kills one replica
 * (SIGKILL) under load and checks that clients saw only answers or retryable errors carrying
 * `retry-after`, in the documented error shape. Prints the figures; exit 1 on any failure,
 * including a missing nginx, unless `--skip-missing` asks to pass (saying so) without it.
 *
 * ```sh
 * deno task scaleout:test [--nginx PATH] [--skip-missing]
 * ```
 *
 * @module
 */
import { parseFlags } from "../conformance/args.ts";
import { startServer, type TestServer } from "../src/test_server.ts";
import { exitForMissingTool } from "./missing_tool.ts";

const flags = parseFlags({
  nginx: { type: "string", default: "/usr/sbin/nginx" },
  "skip-missing": { type: "boolean", default: false },
  help: { type: "boolean", short: "h", default: false },
});
if (flags.help) {
  console.log(`Usage: deno task scaleout:test [options]
  --nginx PATH      the nginx binary (default /usr/sbin/nginx)
  --skip-missing    pass, saying so, when nginx is not installed`);
  Deno.exit(0);
}
const NGINX = flags.nginx;
try {
  Deno.statSync(NGINX);
} catch {
  exitForMissingTool("scale-out test", NGINX, "apt-get install nginx", flags["skip-missing"]);
}

const work = await Deno.makeTempDir({ prefix: "denoise-scaleout-" });
const freePort = () => {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const { port } = l.addr as Deno.NetAddr;
  l.close();
  return port;
};
const lbPort = freePort();
const lb = `http://127.0.0.1:${lbPort}`;
const replicas: TestServer[] = [];
let nginx: Deno.ChildProcess | undefined;
let failed = false;
const check = (ok: boolean, what: string) => {
  console.log(`${ok ? "ok  " : "FAIL"} ${what}`);
  if (!ok) failed = true;
};

try {
  for (let i = 0; i < 2; i++) {
    replicas.push(
      await startServer([
        "--device",
        "cpu",
        "--image-store-dir",
        `${work}/images`,
        "--public-url",
        lb,
        "--max-queue",
        "64",
      ]),
    );
  }
  const upstreams = replicas.map((r) =>
    `    server ${new URL(r.url).host} max_fails=1 fail_timeout=5s;`
  );
  // A replica that goes away: nginx answers in the API's error shape with retry-after, so clients
  // (the openai SDK among them) retry; a draining replica's 503 is retried on the other one.
  await Deno.writeTextFile(
    `${work}/nginx.conf`,
    `daemon off;
pid ${work}/nginx.pid;
error_log ${work}/error.log;
events {}
http {
  access_log off;
  client_body_temp_path ${work}/body;
  proxy_temp_path ${work}/proxy;
  upstream denoise {
${upstreams.join("\n")}
  }
  server {
    listen 127.0.0.1:${lbPort};
    client_max_body_size 2m;
    location / {
      proxy_pass http://denoise;
      proxy_http_version 1.1;
      proxy_buffering off;
      proxy_read_timeout 300s;
      proxy_next_upstream error timeout http_503 non_idempotent;
      proxy_intercept_errors off;
      error_page 502 504 = @unavailable;
    }
    location @unavailable {
      default_type application/json;
      add_header retry-after 1 always;
      return 503 '{"detail":"A replica went away; retry.","error":{"message":"A replica went away; retry.","type":"service_unavailable","param":null,"code":"replica_unavailable"}}';
    }
  }
}
`,
  );
  nginx = new Deno.Command(NGINX, {
    args: ["-c", `${work}/nginx.conf`, "-p", work],
    stdout: "null",
    stderr: "piped",
  }).spawn();
  for (let i = 0;; i++) {
    if (await fetch(`${lb}/health`).then((r) => r.ok, () => false)) break;
    if (i > 100) throw new Error("nginx did not start");
    await new Promise((r) => setTimeout(r, 50));
  }

  const conformance = await new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "-A",
      new URL("../conformance/main.ts", import.meta.url).pathname,
      "--base-url",
      lb,
    ],
    stdout: "piped",
    stderr: "piped",
  }).output();
  check(conformance.success, "conformance through the balancer");
  if (!conformance.success) console.log(new TextDecoder().decode(conformance.stdout).slice(-3000));

  // URL images: made by one replica, fetched (round robin) through both.
  const made = await (await fetch(`${lb}/v1/images/generations`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ prompt: "x", size: "64x64", n: 2, response_format: "url" }),
  })).json();
  const fetched = await Promise.all(
    [...made.data, ...made.data, ...made.data].map((d: { url: string }) =>
      fetch(d.url).then((r) => r.status)
    ),
  );
  check(
    made.data[0].url.startsWith(lb) && fetched.every((s) => s === 200),
    `url images through the balancer: ${fetched.join(", ")}`,
  );

  // One replica killed under load.
  const statuses: Record<string, number> = {};
  const problems: string[] = [];
  const end = performance.now() + 6000;
  const clients = Array.from({ length: 8 }, async () => {
    while (performance.now() < end) {
      try {
        const res = await fetch(`${lb}/v1/images/generations`, {
          method: "POST",
          headers: { "content-type": "application/json" },
          body: JSON.stringify({ prompt: "y", size: "256x256" }),
        });
        const body = await res.json();
        statuses[res.status] = (statuses[res.status] ?? 0) + 1;
        if (res.status !== 200) {
          if (![429, 503].includes(res.status) || !res.headers.get("retry-after")) {
            problems.push(`${res.status} without retry-after`);
          }
          if (typeof body?.error?.message !== "string") {
            problems.push(`${res.status} body ${JSON.stringify(body)}`);
          }
        } else if (!body.data?.[0]?.b64_json) problems.push("a 200 without an image");
      } catch (e) {
        problems.push(`no answer: ${(e as Error).message}`);
      }
    }
  });
  await new Promise((r) => setTimeout(r, 2000));
  replicas[0].kill("SIGKILL");
  await Promise.all(clients);
  check(
    problems.length === 0 && (statuses[200] ?? 0) > 0,
    `one replica killed under 8 clients × 6 s: ${
      Object.entries(statuses).map(([s, n]) => `${s}×${n}`).join(", ")
    }${problems.length ? `; problems: ${[...new Set(problems)].join("; ")}` : ""}`,
  );
} finally {
  nginx?.kill("SIGTERM");
  await nginx?.status;
  for (const r of replicas) await r.stop();
  await Deno.remove(work, { recursive: true });
}
console.log(failed ? "scale-out test FAILED" : "scale-out test passed");
Deno.exit(failed ? 1 : 0);
