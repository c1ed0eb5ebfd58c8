#!/usr/bin/env bash
# Huawei Cloud agent runtime (shared/seeds/001_…): the seed gives the request's parts (path,
# X-Auth-Token, workspace_id, multipart file, expires, is_image) but no curl; this is that request
# as curl sends it, then the answer's url with its Host header.
set -euo pipefail
cd "$WORK"
printf '\x89PNG\r\n\x1a\n\0\0\0\rIHDR\0\0\0\x01\0\0\0\x01\x08\x06\0\0\0\x1f\x15\xc4\x89' > market-CFrwA1xu.png
head -c 30000 /dev/urandom >> market-CFrwA1xu.png

curl -sS --fail-with-body -X POST "$BASE/v1/demo/agent-runtime/upload-file?workspace_id=ws_1" \
  -H "X-Auth-Token: $API_KEY" \
  -F "file=@market-CFrwA1xu.png" -F "expires=2" -F "is_image=true" > resp.json
cat resp.json
url=$(python3 -c 'import json; print(json.load(open("resp.json"))["url"])')
host=$(python3 -c 'import json; print(json.load(open("resp.json"))["headers"][0]["Host"])')
name=$(python3 -c 'import json; print(json.load(open("resp.json"))["file_name"])')
[ "$name" = market-CFrwA1xu.png ]
curl -sS --fail-with-body -H "Host: $host" "$url" -o back.png
cmp market-CFrwA1xu.png back.png
# The seed's JSON request example gets a clear 400.
code=$(curl -s -o json.out -w '%{http_code}' -X POST "$BASE/v1/demo/agent-runtime/upload-file" \
  -H "Content-Type: application/json" -H "X-Auth-Token: $API_KEY" \
  -d '{"file" : "C:\\Users\\Desktop\\market-CFrwA1xu.png"}')
[ "$code" = 400 ] && grep -q multipart/form-data json.out
echo "huawei: ok"
