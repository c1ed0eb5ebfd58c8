"""Uploads a file to filedock's /tus/ endpoint with tuspy (the tus project's Python client), in
5 MiB chunks, printing the offset after each chunk. The upload URL is kept in a url store, so
running this again after an interruption resumes where the server says the upload stands.
When the upload is complete, prints one JSON line: the file id filedock answered and the SHA-256
of the bytes downloaded back.

usage: tus_upload.py BASE KEY FILE URL_STORE
"""
import hashlib
import json
import sys

import requests
from tusclient import client
from tusclient.storage import filestorage

base, key, path, store = sys.argv[1:5]
auth = {"Authorization": f"Bearer {key}"}
tus = client.TusClient(f"{base}/tus/", headers=auth)
uploader = tus.uploader(
    path,
    chunk_size=5 * 1024 * 1024,
    metadata={"filename": "big.bin", "filetype": "application/octet-stream"},
    store_url=True,
    url_storage=filestorage.FileStorage(store),
)
size = uploader.get_file_size()
print(f"start {uploader.offset} of {size}", flush=True)
while uploader.offset < size:
    uploader.upload_chunk()
    print(f"offset {uploader.offset}", flush=True)

head = requests.head(uploader.url, headers={**auth, "Tus-Resumable": "1.0.0"})
head.raise_for_status()
file_id = head.headers["Filedock-File-Id"]
digest = hashlib.sha256()
with requests.get(f"{base}/v1/files/{file_id}/content", headers=auth, stream=True) as r:
    r.raise_for_status()
    for chunk in r.iter_content(1 << 20):
        digest.update(chunk)
info = requests.get(f"{base}/v1/files/{file_id}", headers=auth).json()
print(json.dumps({"file_id": file_id, "downloaded_sha256": digest.hexdigest(), "file": info}), flush=True)
