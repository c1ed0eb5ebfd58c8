#!/usr/bin/env bash
# TokenOps (shared/seeds/000_…): the seed's curl commands, changed only in host and key.
# Env: BASE (filedock's URL), API_KEY, WORK (a scratch dir).
set -euo pipefail
cd "$WORK"
{ printf '\0\0\0\030ftypmp42\0\0\0\0mp42isom'; head -c 200000 /dev/urandom; } > test.mp4

# 第一步:获取预签名上传 URL
resp=$(curl -sS --fail-with-body -X POST "$BASE/v1/files/upload_url" \
  -H "Authorization: Bearer $API_KEY" \
  -H "Content-Type: application/json" \
  -d '{
    "path": "my_files/test.mp4",
    "storage_provider": "COS"
  }')
echo "$resp"
upload_url=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["upload_url"])' "$resp")
visit_url=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["visit_url"])' "$resp")
path=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["path"])' "$resp")
method=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["method"])' "$resp")
[ "$method" = PUT ]
case "$path" in cos://*/my_files/test.mp4) ;; *) echo "unexpected path $path"; exit 1 ;; esac

# 第二步:使用预签名 URL 上传文件
curl -X PUT "$upload_url" \
  --upload-file ./test.mp4 --fail-with-body -sS

# 上传完成后,可通过返回的 visit_url 访问文件
# The visit_url serves the file itself: no redirect to follow (no -L).
curl -sS --fail-with-body "$visit_url" -o back.mp4
cmp test.mp4 back.mp4

# The request body of the page's first example (no storage_provider: the configured default).
curl -sS --fail-with-body --request POST \
  --url "$BASE/v1/files/upload_url" \
  --header "Authorization: Bearer $API_KEY" \
  --header 'Content-Type: application/json' \
  --data '
{
  "path": "my_files/test2.mp4"
}
' > second.json
python3 -c 'import json,sys; r=json.load(open("second.json")); assert r["method"] == "PUT" and r["path"].endswith("/my_files/test2.mp4"), r'
echo "tokenops: ok"
