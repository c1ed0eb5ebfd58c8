// End-to-end test of filedock's web page in a real headless Chromium (Debian's, driven by
// playwright-core; no browser download): sign in, drop files, pause and resume an upload, see
// the list, download, copy a link, delete; then the API docs page (offline Swagger UI) renders
// every route group. Screenshots are kept in $ARTIFACTS (target/artifacts).
//
//   FILEDOCK_BIN=target/debug/filedock node web/e2e.mjs

import { spawn, execFileSync } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { mkdtempSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import assert from "node:assert/strict";
import { chromium } from "playwright-core";

const root = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const BIN = resolve(process.env.FILEDOCK_BIN || join(root, "target/debug/filedock"));
const ARTIFACTS = resolve(process.env.ARTIFACTS || join(root, "target/artifacts"));
const CHROMIUM = process.env.CHROMIUM || "/usr/bin/chromium";
const STEP_MS = 30_000;

const freePort = () =>
  new Promise((ok, fail) => {
    const s = createServer();
    s.listen(0, "127.0.0.1", () => { const p = s.address().port; s.close(() => ok(p)); });
    s.on("error", fail);
  });
const sha256 = (b) => createHash("sha256").update(b).digest("hex");
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

const work = mkdtempSync(join(tmpdir(), "filedock-web-"));
const data = join(work, "data");
const env = { ...process.env, RUST_LOG: "warn" };
// The server reads FILEDOCK_* as settings and refuses unknown ones.
for (const k of Object.keys(env)) if (k.startsWith("FILEDOCK_")) delete env[k];
const key = execFileSync(BIN, ["--data-dir", data, "keys", "create", "--project", "web", "--kind", "integration"], { env })
  .toString().trim().split("\n").pop();
const port = await freePort();
const base = `http://127.0.0.1:${port}`;
const server = spawn(BIN, ["--data-dir", data, "serve", "--listen", `127.0.0.1:${port}`], { env, stdio: ["ignore", "ignore", "inherit"] });
let browser;

async function api(method, path) {
  const r = await fetch(base + path, { method, headers: { Authorization: `Bearer ${key}` } });
  assert.ok(r.ok, `${method} ${path}: ${r.status}`);
  return r.json();
}

try {
  for (let i = 0; ; i++) {
    try { if ((await fetch(base + "/healthz")).ok) break; } catch (_) {}
    assert.ok(i < 100, "filedock did not start");
    await sleep(100);
  }
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
      "--disable-component-update", "--disable-sync"],
  });
  const context = await browser.newContext({ acceptDownloads: true, viewport: { width: 1100, height: 800 } });
  const page = await context.newPage();
  page.setDefaultTimeout(STEP_MS);
  page.on("dialog", (d) => d.accept());
  const failed = [];
  page.on("requestfailed", (r) => failed.push(r.url()));
  // Nothing but this server: the page must work offline.
  const elsewhere = [];
  page.on("request", (r) => { if (!r.url().startsWith(base) && !r.url().startsWith("blob:")) elsewhere.push(r.url()); });

  await page.goto(base + "/");
  assert.equal(await page.title(), "filedock");

  // A wrong key is refused, the right one signs in.
  await page.fill("#key", "sk-not-a-key");
  await page.click("#signin button");
  await page.waitForSelector("#signin-error:text('not valid')");
  await page.fill("#key", key);
  await page.click("#signin button");
  await page.waitForSelector("#app:not(.hidden)");
  await page.waitForSelector("#files td:text('No files yet.')");

  // Drag and drop two files.
  const dropped = await page.evaluateHandle(() => {
    const dt = new DataTransfer();
    dt.items.add(new File(["hello filedock\n"], "hello.txt", { type: "text/plain" }));
    dt.items.add(new File([new Uint8Array(300_000).map((_, i) => (i * 7) & 255)], "pattern.bin"));
    return dt;
  });
  await page.dispatchEvent("#drop", "drop", { dataTransfer: dropped });
  for (const name of ["hello.txt", "pattern.bin"]) {
    await page.waitForSelector(`.upload[data-name="${name}"] .status:text-is("done")`);
    await page.waitForSelector(`#files tr[data-name="${name}"]`);
  }

  // A 24 MiB file through the picker, on a network slowed to 6 MiB/s: pause, nothing moves,
  // resume, done.
  const bigBytes = randomBytes(24 << 20);
  const bigPath = join(work, "big.bin");
  writeFileSync(bigPath, bigBytes);
  const cdp = await context.newCDPSession(page);
  await cdp.send("Network.enable");
  await cdp.send("Network.emulateNetworkConditions", {
    offline: false, latency: 0, downloadThroughput: -1, uploadThroughput: 6 * 1024 * 1024,
  });
  await page.setInputFiles("#picker", bigPath);
  const row = `.upload[data-name="big.bin"]`;
  await page.waitForFunction((sel) => {
    const p = document.querySelector(sel + " progress");
    return p && p.value > 4 * 1024 * 1024;
  }, row);
  await page.click(`${row} button.pause`);
  await page.waitForSelector(`${row} .status:text-is("paused")`);
  await page.waitForSelector(`${row} button.pause:text-is("Resume")`);
  const uploadsPaused = async () => {
    const files = (await api("GET", "/v1/files")).files;
    return files.find((f) => f.name === "big.bin");
  };
  const pending = await uploadsPaused();
  assert.ok(!pending || pending.status === "pending", "paused, yet the file is ready");
  const paused = await page.$eval(`${row} progress`, (p) => p.value);
  await sleep(1500);
  assert.equal(await page.$eval(`${row} progress`, (p) => p.value), paused, "a paused upload moved");
  assert.ok(paused < bigBytes.length, "paused after the end");
  await cdp.send("Network.emulateNetworkConditions", {
    offline: false, latency: 0, downloadThroughput: -1, uploadThroughput: -1,
  });
  await page.click(`${row} button.pause`);
  await page.waitForSelector(`${row} .status:text-is("done")`);
  await page.waitForSelector(`#files tr[data-name="big.bin"]`);
  const big = (await api("GET", "/v1/files")).files.find((f) => f.name === "big.bin");
  assert.equal(big.size, bigBytes.length);
  assert.equal(big.sha256, sha256(bigBytes));
  console.log(`web: paused at ${paused} of ${bigBytes.length} bytes, resumed, stored whole`);

  // The list shows type, size, age and expiry.
  const cells = await page.$$eval(`#files tr[data-name="hello.txt"] td`, (tds) => tds.map((t) => t.textContent));
  assert.match(cells[1], /^text\/plain/);
  assert.equal(cells[2], "15 B");
  assert.match(cells[3], /^\d+s$/);
  assert.match(cells[4], /^in \d+[smhd]$|^never$/);

  mkdirSync(ARTIFACTS, { recursive: true });
  await page.screenshot({ path: join(ARTIFACTS, "web.png"), fullPage: true });

  // Download.
  const [download] = await Promise.all([
    page.waitForEvent("download"),
    page.click(`#files tr[data-name="hello.txt"] button.download`),
  ]);
  assert.equal(download.suggestedFilename(), "hello.txt");
  assert.equal(readFileSync(await download.path(), "utf8"), "hello filedock\n");

  // Copy a link: it serves the bytes without a key.
  await page.click(`#files tr[data-name="pattern.bin"] button.copy`);
  await page.waitForFunction(() => document.getElementById("link").dataset.url);
  const url = await page.$eval("#link", (e) => e.dataset.url);
  const got = Buffer.from(await (await fetch(url)).arrayBuffer());
  assert.equal(got.length, 300_000);
  assert.equal(got[7], (7 * 7) & 255);

  // Delete.
  await page.click(`#files tr[data-name="hello.txt"] button.delete`);
  await page.waitForSelector(`#files tr[data-name="hello.txt"]`, { state: "detached" });
  const names = (await api("GET", "/v1/files")).files.map((f) => f.name).sort();
  assert.deepEqual(names, ["big.bin", "pattern.bin"]);

  // The API docs page renders offline from the binary's assets, every route group listed.
  const errors = [];
  page.on("pageerror", (e) => errors.push(String(e)));
  await page.goto(base + "/docs/");
  await page.waitForSelector(".opblock", { timeout: STEP_MS });
  const tags = await page.$$eval(".opblock-tag", (els) => els.map((e) => e.getAttribute("data-tag")));
  for (const t of ["files", "uploads", "tus", "tokenops", "huawei", "juniortree", "cyberun", "workflows", "blob", "operations"]) {
    assert.ok(tags.includes(t), `docs page lacks the ${t} group (has ${tags})`);
  }
  const ops = await page.$$eval(".opblock", (els) => els.length);
  assert.ok(ops >= 45, `docs page shows ${ops} operations`);
  await page.screenshot({ path: join(ARTIFACTS, "docs.png") });
  assert.deepEqual(errors, [], "the docs page raised errors");

  assert.deepEqual(elsewhere, [], "the pages reached beyond filedock");
  console.log(`web: ok, docs page: ${ops} operations (screenshots ${join(ARTIFACTS, "web.png")}, docs.png)`);
} catch (e) {
  console.error("web: FAILED:", e);
  process.exitCode = 1;
} finally {
  if (browser) await browser.close();
  server.kill("SIGTERM");
  rmSync(work, { recursive: true, force: true });
}
