#!/usr/bin/env bash
# Juniortree (shared/seeds/002_…): the seed's curl example, changed only in host and key
# (a filedock key is required by default).
set -euo pipefail
cd "$WORK"
mkdir -p path/to/your
printf '\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00' > path/to/your/file.jpg
head -c 50000 /dev/urandom >> path/to/your/file.jpg

curl -X POST "$BASE/api/v1/upload" \
  -H "Authorization: Bearer $API_KEY" \
  -H 'Agent: fastgpt' \
  -F 'file=@path/to/your/file.jpg' \
  -F 'created_by=user123' -sS --fail-with-body > resp.json
cat resp.json
python3 - <<'PY'
import json
r = json.load(open("resp.json"))
assert r["code"] == 200 and r["msg"] == "File uploaded successfully", r
d = r["data"]
assert d["name"] == "file.jpg" and d["extension"] == "jpg" and d["mime_type"] == "image/jpeg", d
assert d["created_by"] == "user123" and d["size"] == len(open("path/to/your/file.jpg", "rb").read()), d
open("id.txt", "w").write(d["id"])
PY
# The id serves the file itself: no redirect to follow (no -L).
curl -sS --fail-with-body "$(cat id.txt)" -o back.jpg
cmp path/to/your/file.jpg back.jpg

# The reference example, as the document writes it: `example-file`, a JPEG without an extension.
cp path/to/your/file.jpg example-file
curl --request POST \
  --url "$BASE/api/v1/upload" \
  --header "Authorization: Bearer $API_KEY" \
  --header 'Agent: <agent>' \
  --header 'Content-Type: multipart/form-data' \
  --form file='@example-file' \
  --form created_by=xiaoming -sS --fail-with-body > ref.json
python3 - <<'PY'
import json
d = json.load(open("ref.json"))["data"]
assert d["name"] == "example-file" and d["extension"] == "jpg" and d["mime_type"] == "image/jpeg", d
open("ref-id.txt", "w").write(d["id"])
PY
curl -sS --fail-with-body "$(cat ref-id.txt)" -o ref-back
cmp example-file ref-back
echo "juniortree curl: ok"
