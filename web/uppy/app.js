// A browser app on its own origin that uploads to filedock on another one, the way a chat front
// end would: Uppy with @uppy/tus, and @uppy/aws-s3 in multipart mode whose callbacks call
// filedock's native multipart API. Bundled by esbuild (web/uppy.mjs); the test calls the
// functions below through page.evaluate.
import Uppy from "@uppy/core";
import Tus from "@uppy/tus";
import AwsS3 from "@uppy/aws-s3";

const MIB = 1024 * 1024;

/** `size` random bytes as a File (getRandomValues fills at most 64 KiB per call). */
function randomFile(size, name) {
  const bytes = new Uint8Array(size);
  for (let at = 0; at < size; at += 65536) crypto.getRandomValues(bytes.subarray(at, Math.min(size, at + 65536)));
  return new File([bytes], name, { type: "application/octet-stream" });
}

async function sha256(blob) {
  const digest = await crypto.subtle.digest("SHA-256", await blob.arrayBuffer());
  return [...new Uint8Array(digest)].map((b) => b.toString(16).padStart(2, "0")).join("");
}

/** One file through Uppy's tus plugin; with `pause`, paused after 3 MiB and resumed 0.5 s later. */
window.tusUpload = async (api, key, size, name, pause) => {
  const uppy = new Uppy({ autoProceed: false });
  uppy.use(Tus, {
    endpoint: `${api}/tus/`,
    headers: { Authorization: `Bearer ${key}` },
    chunkSize: pause ? 1 * MIB : 8 * MIB,
    retryDelays: [0, 500, 1000],
  });
  const file = randomFile(size, name);
  const id = uppy.addFile({ name, type: file.type, data: file });
  let paused = 0;
  if (pause) {
    uppy.on("upload-progress", (_f, p) => {
      if (paused === 0 && p.bytesUploaded >= 3 * MIB) {
        paused = p.bytesUploaded;
        uppy.pauseResume(id);
        setTimeout(() => uppy.pauseResume(id), 500);
      }
    });
  }
  const result = await uppy.upload();
  return {
    sha256: await sha256(file),
    failed: result.failed.map((f) => String(f.error)),
    uploadURL: result.successful[0]?.uploadURL ?? null,
    pausedAt: paused,
  };
};

/** One file through @uppy/aws-s3 in multipart mode, on filedock's native multipart API. */
window.multipartUpload = async (api, key, size, name) => {
  const json = { Authorization: `Bearer ${key}`, "Content-Type": "application/json" };
  const call = async (path, method, body) => {
    const r = await fetch(api + path, { method, headers: json, body: body && JSON.stringify(body) });
    if (!r.ok) throw new Error(`${method} ${path}: ${r.status} ${await r.text()}`);
    return r.status === 204 ? null : r.json();
  };
  const PART = 5 * MIB;
  const fileIds = {};
  const etags = [];
  const uppy = new Uppy({ autoProceed: false });
  uppy.use(AwsS3, {
    shouldUseMultipart: true,
    getChunkSize: () => PART,
    async createMultipartUpload(file) {
      const mp = await call("/v1/uploads/multipart", "POST", { name: file.name, size: file.size, part_size: PART });
      fileIds[file.id] = mp.file.id;
      return { uploadId: mp.upload_id, key: mp.file.key };
    },
    async signPart(_file, { uploadId, partNumber }) {
      const { parts } = await call(`/v1/uploads/multipart/${uploadId}/parts`, "POST", { part_numbers: [partNumber] });
      // The browser sets Content-Length itself (it may not be set by a page).
      const headers = Object.fromEntries(Object.entries(parts[0].headers).filter(([k]) => k.toLowerCase() !== "content-length"));
      return { method: "PUT", url: parts[0].url, headers };
    },
    async listParts() {
      return [];
    },
    async abortMultipartUpload(_file, { uploadId }) {
      await call(`/v1/uploads/multipart/${uploadId}`, "DELETE");
    },
    async completeMultipartUpload(file, { uploadId, parts }) {
      etags.push(...parts.map((p) => p.ETag));
      const done = await call(`/v1/uploads/multipart/${uploadId}/complete`, "POST", {
        parts: parts.map((p) => ({ part_number: p.PartNumber, etag: p.ETag })),
      });
      return { location: `${api}/v1/files/${done.id}` };
    },
  });
  const file = randomFile(size, name);
  const id = uppy.addFile({ name, type: file.type, data: file });
  const result = await uppy.upload();
  return {
    sha256: await sha256(file),
    failed: result.failed.map((f) => String(f.error)),
    fileId: fileIds[id] ?? null,
    etags,
  };
};
