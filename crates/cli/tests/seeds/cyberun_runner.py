# A runner for Cyberun's img2img workflow, with a device (dk-) key: claims the task the seed's
# example queued, downloads its input straight from storage, "enhances" it (adds a tEXt chunk
# with the prompt), uploads the output through outputs/presign, and completes the task.
import os, struct, zlib

import requests

os.chdir(os.environ["WORK"])
BASE = os.environ["BASE"] + "/api/v1/r"
H = {"Authorization": f"Bearer {os.environ['DEVICE_KEY']}"}

# An integration key may not claim; the device key gets the task.
refused = requests.post(f"{BASE}/tasks/claim", headers={"Authorization": f"Bearer {os.environ['API_KEY']}"}, json={})
assert refused.status_code == 403, refused.status_code
claim = requests.post(f"{BASE}/tasks/claim", headers=H, json={"wait_secs": 10})
assert claim.status_code == 200, (claim.status_code, claim.text)
task = claim.json()
assert task["task_id"] == open("task_id").read().strip(), task
assert (task["workflow"], task["workflow_slug"], task["attempt"]) == ("wf_img2img", "img2img", 1), task
assert task["parameters"]["prompt"] == "enhance", task
image = task["parameters"]["input_image"]
assert image["file_key"].startswith("inputs/") and image["file_name"] == "photo.png", image

# The input, from its short-lived URL (straight from the bucket on S3).
photo = open("photo.png", "rb").read()
got = requests.get(image["download_url"])
assert got.status_code == 200 and got.content == photo, got.status_code

def chunk(kind, data):
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
out = got.content[:-12] + chunk(b"tEXt", b"prompt\x00" + task["parameters"]["prompt"].encode()) + got.content[-12:]
open("output.png", "wb").write(out)

task_id = task["task_id"]
p = requests.post(
    f"{BASE}/tasks/{task_id}/outputs/presign",
    headers=H,
    json={"file_name": "enhanced.png", "file_size": len(out), "content_type": "image/png"},
).json()
assert p["file_key"].startswith(f"outputs/demo/{task_id}/"), p
put = requests.put(p["upload_url"], data=out, headers=p["upload_headers"])
assert put.status_code == 200, (put.status_code, put.text)
done = requests.post(f"{BASE}/tasks/{task_id}/complete", headers=H, json={"outputs": [p["file_key"]]})
assert done.status_code == 200 and done.json()["status"] == "succeeded", done.text
print("runner: completed", task_id)
