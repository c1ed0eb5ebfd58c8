# Cyberun (shared/seeds/003_…): the end-to-end example — presign, PUT, run the img2img workflow —
# changed only in BASE and API_KEY, with a real photo.png of the size the example declares
# (1048576 bytes). It prints the task id; cyberun_runner.py then runs the task with a device key,
# and cyberun_result.py reads the result as the client.
import hashlib, os, struct, zlib

import requests

os.chdir(os.environ["WORK"])
def chunk(kind, data):
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 1, 1, 8, 6, 0, 0, 0))
png += chunk(b"IDAT", zlib.compress(b"\x00\x00\x00\x00\x00"))
filler = 1048576 - len(png) - 12 - 12
png += chunk(b"tEXt", b"c\x00" + os.urandom(filler - 2)) + chunk(b"IEND", b"")
assert len(png) == 1048576
open("photo.png", "wb").write(png)

# ---- the seed, verbatim but for API_KEY and BASE ----
API_KEY = os.environ["API_KEY"]
BASE = os.environ["BASE"] + "/api/v1/r"
HEADERS = {"Authorization": f"Bearer {API_KEY}", "Content-Type": "application/json"}

# 1. 预签名
presign = requests.post(
    f"{BASE}/files/presign",
    headers=HEADERS,
    json={
        "file_name": "photo.png",
        "file_size": 1048576,
        "content_type": "image/png",
    },
).json()

# 2. PUT 到 S3 —— 把 presign 返回的每个 header 都带上
with open("photo.png", "rb") as f:
    requests.put(presign["upload_url"], data=f, headers=presign["upload_headers"])

# 3. 提交一个接收文件参数的工作流
resp = requests.post(
    f"{BASE}/workflows/slug/img2img/run",
    headers=HEADERS,
    json={"parameters": {"input_image": presign["file_key"], "prompt": "enhance"}},
)
print(resp.json()["task_id"])
# ---- end of the seed ----

open("task_id", "w").write(resp.json()["task_id"])

assert presign["file_key"].startswith("inputs/") and presign["file_key"].endswith("/photo.png"), presign
assert presign["upload_headers"] == {"Content-Length": "1048576", "If-None-Match": "*"}, presign
# The PUT again: the object exists → 412; and without the signed headers → 403.
with open("photo.png", "rb") as f:
    again = requests.put(presign["upload_url"], data=f, headers=presign["upload_headers"])
assert again.status_code == 412, again.status_code
bare = requests.put(presign["upload_url"], data=b"x")
assert bare.status_code == 403, bare.status_code

# The bytes, read back through filedock's own API with the same key.
native = os.environ["BASE"] + "/v1/files"
auth = {"Authorization": f"Bearer {API_KEY}"}
listed = [f["key"] for f in requests.get(native, headers=auth).json()["files"]]
assert presign["file_key"] in listed, "the run used the presigned input, so it is ready"
found = requests.get(f"{native}/lookup", params={"path": presign["file_key"]}, headers=auth)
assert found.status_code == 200, found.text
record = found.json()
assert record["status"] == "ready" and record["detected_type"] == "image/png", record
# On S3 the bytes never pass through filedock, so it checks size and type but knows no SHA-256.
assert record["sha256"] in (None, hashlib.sha256(png).hexdigest()), record
content = requests.get(f"{native}/{record['id']}/content", headers=auth)
assert content.content == png, "bytes differ"
print("cyberun: ok")
