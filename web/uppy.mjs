// Uppy in a real browser, from another origin (issue 22): a page served on one port uses
// @uppy/core with @uppy/tus and @uppy/aws-s3 (multipart, on filedock's native multipart API)
// against filedock on another port, in Debian's headless Chromium driven by playwright-core.
// Checks: a 30 MiB tus upload; one paused and resumed; a multipart upload whose part ETags are
// read through CORS; each stored file's SHA-256 equals the browser's; and the browser's fetch
// reads the JSON of 401, 413 and 415 refusals of 5-50 MiB bodies 20 of 20 times.
//
//   FILEDOCK_BIN=target/debug/filedock node web/uppy.mjs

import { spawn, execFileSync } from "node:child_process";
import { readFileSync, mkdtempSync, rmSync } from "node:fs";
import { createServer as createHttpServer } from "node:http";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import assert from "node:assert/strict";
import { build } from "esbuild";
import { chromium } from "playwright-core";

const here = dirname(fileURLToPath(import.meta.url));
const root = resolve(here, "..");
const BIN = resolve(process.env.FILEDOCK_BIN || join(root, "target/debug/filedock"));
const CHROMIUM = process.env.CHROMIUM || "/usr/bin/chromium";
const MIB = 1024 * 1024;

const freePort = () =>
  new Promise((ok, fail) => {
    const s = createServer();
    s.listen(0, "127.0.0.1", () => { const p = s.address().port; s.close(() => ok(p)); });
    s.on("error", fail);
  });
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// The page's script: Uppy and its plugins in one file.
const bundled = await build({
  entryPoints: [join(here, "uppy/app.js")],
  bundle: true,
  format: "esm",
  write: false,
  logLevel: "warning",
});
const appJs = bundled.outputFiles[0].contents;
const indexHtml = readFileSync(join(here, "uppy/index.html"));

const work = mkdtempSync(join(tmpdir(), "filedock-uppy-"));
const data = join(work, "data");
const env = { ...process.env, RUST_LOG: "warn" };
for (const k of Object.keys(env)) if (k.startsWith("FILEDOCK_")) delete env[k];
// Native uploads at most 20 MiB, so a 50 MiB body is refused with 413.
env.FILEDOCK_POLICIES__NATIVE__MAX_SIZE = String(20 * MIB);
const key = execFileSync(BIN, ["--data-dir", data, "keys", "create", "--project", "web", "--kind", "integration"], { env })
  .toString().trim().split("\n").pop();
const [apiPort, pagePort] = [await freePort(), await freePort()];
const api = `http://127.0.0.1:${apiPort}`;
const pageBase = `http://localhost:${pagePort}`; // another origin than the API's
const server = spawn(BIN, ["--data-dir", data, "serve", "--listen", `127.0.0.1:${apiPort}`], { env, stdio: ["ignore", "ignore", "inherit"] });
const page_server = createHttpServer((req, res) => {
  const js = req.url === "/app.js";
  res.writeHead(200, { "content-type": js ? "text/javascript" : "text/html; charset=utf-8" });
  res.end(js ? appJs : indexHtml);
}).listen(pagePort, "127.0.0.1");
let browser;

async function fileByName(name) {
  const r = await fetch(`${api}/v1/files?limit=100`, { headers: { Authorization: `Bearer ${key}` } });
  assert.ok(r.ok);
  const found = (await r.json()).files.filter((f) => f.name === name);
  assert.equal(found.length, 1, `one file named ${name}`);
  return found[0];
}

async function storedSha(id) {
  const r = await fetch(`${api}/v1/files/${id}/content`, { headers: { Authorization: `Bearer ${key}` } });
  assert.ok(r.ok);
  const { createHash } = await import("node:crypto");
  return createHash("sha256").update(Buffer.from(await r.arrayBuffer())).digest("hex");
}

try {
  for (let i = 0; ; i++) {
    try { if ((await fetch(api + "/healthz")).ok) break; } catch (_) {}
    assert.ok(i < 100, "filedock did not start");
    await sleep(100);
  }
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking", "--disable-component-update"],
  });
  const page = await (await browser.newContext()).newPage();
  page.setDefaultTimeout(120_000);
  page.on("pageerror", (e) => console.error("page error:", e));
  await page.goto(pageBase + "/");
  await page.waitForFunction(() => typeof window.tusUpload === "function");

  // 1. tus: 30 MiB.
  const tus = await page.evaluate(([a, k]) => window.tusUpload(a, k, 30 * 1024 * 1024, "uppy-tus.bin", false), [api, key]);
  assert.deepEqual(tus.failed, [], "the tus upload failed");
  assert.ok(tus.uploadURL.startsWith(`${api}/tus/`), tus.uploadURL);
  const tusFile = await fileByName("uppy-tus.bin");
  assert.equal(tusFile.status, "ready");
  assert.equal(tusFile.size, 30 * MIB);
  assert.equal(tusFile.sha256, tus.sha256, "the SHA-256 filedock recorded is the browser's");
  assert.equal(await storedSha(tusFile.id), tus.sha256, "the bytes stored are the browser's");
  console.log("uppy tus: 30 MiB, SHA-256 equal");

  // 2. tus, paused after 3 MiB and resumed.
  const resumed = await page.evaluate(([a, k]) => window.tusUpload(a, k, 30 * 1024 * 1024, "uppy-resumed.bin", true), [api, key]);
  assert.deepEqual(resumed.failed, []);
  assert.ok(resumed.pausedAt >= 3 * MIB && resumed.pausedAt < 30 * MIB, `paused at ${resumed.pausedAt}`);
  const resumedFile = await fileByName("uppy-resumed.bin");
  assert.equal(resumedFile.sha256, resumed.sha256);
  assert.equal(await storedSha(resumedFile.id), resumed.sha256);
  console.log(`uppy tus paused at ${resumed.pausedAt} bytes and resumed: SHA-256 equal`);

  // 3. @uppy/aws-s3 multipart on the native multipart API: part ETags read through CORS.
  const mp = await page.evaluate(([a, k]) => window.multipartUpload(a, k, 12 * 1024 * 1024, "uppy-multipart.bin"), [api, key]);
  assert.deepEqual(mp.failed, []);
  assert.equal(mp.etags.length, 3, "three parts");
  assert.ok(mp.etags.every((e) => typeof e === "string" && e.length > 2), `ETags: ${mp.etags}`);
  const mpFile = await fileByName("uppy-multipart.bin");
  assert.equal(mpFile.id, mp.fileId);
  assert.equal(mpFile.status, "ready");
  assert.equal(await storedSha(mpFile.id), mp.sha256);
  if (mpFile.sha256 !== null) assert.equal(mpFile.sha256, mp.sha256);
  console.log("uppy aws-s3 multipart: 3 parts, SHA-256 equal");

  // 4. The browser's fetch reads early refusals of large bodies.
  const refusals = await page.evaluate(async ([a, k]) => {
    const body = (n) => new Uint8Array(n).map((_, i) => (i * 2654435761) >>> 24);
    const sizes = [5, 20, 50].map((m) => body(m * 1024 * 1024));
    const cases = [
      ["401", (b) => fetch(`${a}/v1/files?name=a.bin`, { method: "POST", body: b }), 401],
      ["413", (b) => fetch(`${a}/v1/files?name=a.bin`, { method: "POST", headers: { Authorization: `Bearer ${k}` }, body: b }), 413],
      ["415", (b) => fetch(`${a}/v1/files?name=a.png`, { method: "POST", headers: { Authorization: `Bearer ${k}` }, body: b }), 415],
    ];
    const out = {};
    for (const [name, send, status] of cases) {
      let ok = 0;
      const errors = [];
      for (let i = 0; i < 20; i++) {
        // 413 needs a body over 20 MiB (50 MiB), 415 one within it (5 or 20 MiB); 401 takes
        // turns of all three.
        const b = status === 413 ? sizes[2] : status === 415 ? sizes[i % 2] : sizes[i % 3];
        try {
          const r = await send(b);
          const j = await r.json();
          if (r.status === status && j.error && j.error.code) ok++;
          else errors.push(`${r.status}`);
        } catch (e) {
          errors.push(String(e));
        }
      }
      out[name] = { ok, errors: errors.slice(0, 3) };
    }
    return out;
  }, [api, key]);
  for (const [name, r] of Object.entries(refusals)) {
    console.log(`chromium fetch ${name}: ${r.ok} of 20 read ${r.errors.join("; ")}`);
    assert.equal(r.ok, 20, `Chromium read the ${name} refusal ${r.ok} of 20 times: ${r.errors}`);
  }
  console.log("uppy in Chromium from another origin: ok");
} finally {
  if (browser) await browser.close();
  page_server.close();
  server.kill();
  rmSync(work, { recursive: true, force: true });
}
