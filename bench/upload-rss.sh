#!/usr/bin/env bash
# Streams one large file (default 1 GiB) into a release filedock through the native API and
# reports what the server spent: peak RSS (VmHWM), CPU-seconds, MB/s. Then downloads it back and
# checks the bytes (SHA-256 against the input and against the record).
#
#   bash bench/upload-rss.sh            # 1 GiB, release build
#   SIZE_MIB=256 bash bench/upload-rss.sh
#   PROFILE=dev bash bench/upload-rss.sh # the debug build (CI: the tests built it already; the
#                                        # RSS and the round trip are checked, speed is not)
#
# Exits non-zero if the round trip differs or the peak RSS reaches RSS_LIMIT_MIB (default 64).
set -euo pipefail
cd "$(dirname "$0")/.."
SIZE_MIB=${SIZE_MIB:-1024}
RSS_LIMIT_MIB=${RSS_LIMIT_MIB:-64}

PROFILE=${PROFILE:-release}
cargo build --profile "$PROFILE" --locked -q -p filedock
BIN=$PWD/target/$([ "$PROFILE" = dev ] && echo debug || echo "$PROFILE")/filedock
WORK=$(mktemp -d "${TMPDIR:-/tmp}/filedock-bench.XXXXXX")
PID=
cleanup() { [ -n "$PID" ] && kill "$PID" 2>/dev/null; wait 2>/dev/null; rm -rf "$WORK"; }
trap cleanup EXIT

head -c $((SIZE_MIB << 20)) /dev/urandom > "$WORK/in.bin"
IN_SHA=$(sha256sum "$WORK/in.bin" | cut -d' ' -f1)
KEY=$("$BIN" keys create --data-dir "$WORK/data" --project bench --kind integration | tail -n 1)
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
BASE="http://127.0.0.1:$PORT"
"$BIN" serve --data-dir "$WORK/data" --listen "127.0.0.1:$PORT" 2>"$WORK/server.log" &
PID=$!
for _ in $(seq 100); do curl -sf "$BASE/healthz" >/dev/null && break; sleep 0.1; done

ticks() { awk '{print $14 + $15}' "/proc/$PID/stat"; }
HZ=$(getconf CLK_TCK)
T0=$(ticks); S0=$(date +%s.%N)
curl -sS -f -X POST -T "$WORK/in.bin" -H "Authorization: Bearer $KEY" -H "Content-Type: application/octet-stream" \
  "$BASE/v1/files?name=in.bin" -o "$WORK/record.json"
S1=$(date +%s.%N); T1=$(ticks)
HWM_KB=$(awk '/VmHWM/ {print $2}' "/proc/$PID/status")

ID=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["id"])' "$WORK/record.json")
REC_SHA=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["sha256"])' "$WORK/record.json")
OUT_SHA=$(curl -sS -f -H "Authorization: Bearer $KEY" "$BASE/v1/files/$ID/content" | sha256sum | cut -d' ' -f1)

python3 - "$SIZE_MIB" "$S0" "$S1" "$T0" "$T1" "$HZ" "$HWM_KB" "$PROFILE" <<'PY'
import sys
mib, s0, s1, t0, t1, hz, hwm = int(sys.argv[1]), *map(float, sys.argv[2:4]), *map(int, sys.argv[4:8])
secs, cpu = s1 - s0, (t1 - t0) / hz
print(f"upload of {mib} MiB through POST /v1/files (fsync before the answer), {sys.argv[8]} build")
print(f"  wall          {secs:8.2f} s   {mib * 1.048576 / secs:8.1f} MB/s")
print(f"  server CPU    {cpu:8.2f} s   {cpu / (mib / 1024):8.2f} CPU-s per GiB (SHA-256 included)")
print(f"  peak RSS      {hwm / 1024:8.1f} MiB (VmHWM of the server process)")
PY
echo "  sha256 input  $IN_SHA"
echo "  sha256 record $REC_SHA"
echo "  sha256 back   $OUT_SHA"
[ "$IN_SHA" = "$REC_SHA" ] && [ "$IN_SHA" = "$OUT_SHA" ] || { echo "FAIL: the bytes differ"; exit 1; }
if [ "$HWM_KB" -ge $((RSS_LIMIT_MIB * 1024)) ]; then
  echo "FAIL: peak RSS $((HWM_KB / 1024)) MiB is not under ${RSS_LIMIT_MIB} MiB"; exit 1
fi
echo "OK: identical bytes; peak RSS under ${RSS_LIMIT_MIB} MiB"
