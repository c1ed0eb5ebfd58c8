// Node's built-in fetch (undici) against refusals that filedock answers before reading the body:
// every upload route, bodies of 5 to 50 MiB, each case ROUNDS times. undici writes the whole body
// before it reads the answer, so without a lingering close it fails with EPIPE / "fetch failed".
// Usage: BASE=http://127.0.0.1:port KEY=<integration key> node refusals.mjs
// Prints one line per case and exits non-zero if any answer could not be read as expected.

const BASE = process.env.BASE;
const KEY = process.env.KEY;
const ROUNDS = Number(process.env.ROUNDS || 20);
const MIB = 1024 * 1024;
const SIZES = [5 * MIB, 20 * MIB, 50 * MIB];

function random(n) {
  const b = Buffer.allocUnsafe(n);
  let x = 0x9e3779b9;
  for (let i = 0; i < n; i += 4) {
    x ^= x << 13; x ^= x >>> 17; x ^= x << 5;
    b.writeUInt32LE(x >>> 0, i);
  }
  return b;
}

// A form as the Juniortree seed's JavaScript example builds it (FormData with a file).
function form(name, bytes, fields = {}) {
  const f = new FormData();
  f.append("file", new Blob([bytes]), name);
  for (const [k, v] of Object.entries(fields)) f.append(k, v);
  return f;
}

// A body of unknown length, sent chunked as a stream (as an app piping a file does).
function streamed(bytes) {
  let at = 0;
  return new ReadableStream({
    pull(c) {
      if (at >= bytes.length) return c.close();
      c.enqueue(bytes.subarray(at, at + 256 * 1024));
      at += 256 * 1024;
    },
  });
}

async function json(url, init) {
  const r = await fetch(url, init);
  return { status: r.status, body: await r.json() };
}

// One tus upload to PATCH at a wrong offset, and a presigned PUT (TokenOps) for a too-large body.
async function setup() {
  const auth = { authorization: `Bearer ${KEY}` };
  const tus = await fetch(`${BASE}/tus/`, {
    method: "POST",
    headers: { ...auth, "tus-resumable": "1.0.0", "upload-length": "1000" },
  });
  if (tus.status !== 201) throw new Error(`tus creation: ${tus.status}`);
  const tusUrl = new URL(tus.headers.get("location"), BASE).href;
  const presigned = await json(`${BASE}/v1/files/upload_url`, {
    method: "POST",
    headers: { ...auth, "content-type": "application/json" },
    body: JSON.stringify({ path: `refusals/${Date.now()}.bin` }),
  });
  if (presigned.status !== 200) throw new Error(`upload_url: ${presigned.status}`);
  const cyberun = await json(`${BASE}/api/v1/r/files/presign`, {
    method: "POST",
    headers: { ...auth, "content-type": "application/json" },
    body: JSON.stringify({ file_name: "c.bin", file_size: 1000 }),
  });
  if (cyberun.status !== 200) throw new Error(`cyberun presign: ${cyberun.status}`);
  return { tusUrl, putUrl: presigned.body.upload_url, cyberunUrl: cyberun.body.upload_url };
}

// Each case: a request for a body, and the status and JSON field the answer must have.
function cases({ tusUrl, putUrl, cyberunUrl }) {
  const auth = { authorization: `Bearer ${KEY}` };
  const bad = { authorization: "Bearer fd_not_a_key" };
  const huawei = (bytes, name, token) => [`${BASE}/v1/demo/agent-runtime/upload-file`,
    { method: "POST", headers: token ? { "x-auth-token": token } : {}, body: form(name, bytes) }];
  const junior = (bytes, name, headers) => [`${BASE}/api/v1/upload`,
    { method: "POST", headers: { agent: "node", ...headers }, body: form(name, bytes, { created_by: "node" }) }];
  const native = (name, headers) => (b, t, i) => [`${BASE}/v1/files?name=${name}`, i % 2
    ? { method: "POST", headers, body: b }
    : { method: "POST", headers, body: streamed(b), duplex: "half" }];
  const tusPatch = (bytes, headers) => [tusUrl, {
    method: "PATCH",
    headers: { "tus-resumable": "1.0.0", "upload-offset": "1", "content-type": "application/offset+octet-stream", ...headers },
    body: bytes,
  }];
  return [
    ["native 401", native("a.bin", bad), 401, "error"],
    ["native 413", native("a.bin", auth), 413, "error"],
    ["native 415", native("a.png", auth), 415, "error"],
    ["huawei 401", (b) => huawei(b, "a.txt", null), 401, "error_code"],
    ["huawei 413", (b, t) => huawei(t, "a.txt", KEY), 413, "error_code"],
    ["huawei 415", (b) => huawei(b, "a.exe", KEY), 415, "error_code"],
    ["juniortree 401", (b) => junior(b, "a.png", bad), 401, "detail"],
    ["juniortree 413", (b, t) => junior(t, "a.txt", auth), 413, "detail"],
    ["juniortree 415", (b) => junior(b, "a.exe", auth), 415, "detail"],
    ["tus PATCH 401", (b) => tusPatch(b, bad), 401, "error"],
    ["tus PATCH 409", (b) => tusPatch(b, auth), 409, "error"],
    ["presigned PUT 413", (b) => [putUrl, { method: "PUT", body: b }], 413, null],
    // A length other than the signed one: refused by the signature, before the body.
    ["cyberun PUT 403", (b) => [cyberunUrl, { method: "PUT", headers: { "if-none-match": "*" }, body: b }], 403, null],
    ["tus POST 413", (b) => [`${BASE}/tus/`, {
      method: "POST",
      headers: { ...auth, "tus-resumable": "1.0.0", "upload-length": String(b.length), "content-type": "application/offset+octet-stream" },
      body: b,
    }], 413, "error"],
  ];
}

const bodies = SIZES.map(random);
const texts = SIZES.map((n) => Buffer.alloc(n, "a"));
// CASES: which statuses to try (a server with small limits answers 413 before it looks at a
// type, so 415 needs a server with large ones).
const wanted = (process.env.CASES || "401,403,409,413,415").split(",").map(Number);
const all = cases(await setup()).filter(([, , status]) => wanted.includes(status));
let failed = 0;
for (const [name, make, status, field] of all) {
  let ok = 0;
  const errors = new Map();
  for (let i = 0; i < ROUNDS; i++) {
    const [url, init] = make(bodies[i % bodies.length], texts[i % texts.length], i);
    try {
      const r = await fetch(url, init);
      const text = await r.text();
      if (r.status !== status) throw new Error(`status ${r.status}: ${text.slice(0, 200)}`);
      if (field !== null && !(field in JSON.parse(text))) throw new Error(`no "${field}" in ${text.slice(0, 200)}`);
      ok++;
    } catch (e) {
      const why = `${e.message}${e.cause ? ` (${e.cause.code || e.cause.message})` : ""}`;
      errors.set(why, (errors.get(why) || 0) + 1);
    }
  }
  if (ok !== ROUNDS) failed++;
  console.log(`${name}: ${ok} of ${ROUNDS} read${errors.size ? "; " + [...errors].map(([k, v]) => `${v}× ${k}`).join("; ") : ""}`);
}
process.exit(failed ? 1 : 0);
