#!/usr/bin/env bash
# A/B of filedock binaries on this machine, alternating, for changes that should not move the
# figures (bench/run.py compares filedock with a peer; this compares filedock with itself):
#
#   bash bench/ab.sh NAME=BINARY NAME=BINARY ...      e.g. before=/tmp/fd-old after=target/release/filedock
#
# Each round starts one fresh server per binary on the embedded default (rate limit and upload
# cap off, as bench/run.py has them) on 127.0.0.1 and measures, in turn: the server's CPU-seconds
# (utime + stime from /proc/PID/stat) for one 1 GiB POST /v1/files and for 500 tus PATCHes of
# 64 KiB on one connection, then creations/s with wrk (2 threads, 64 connections, 5 s) for native
# presign and tus creation. ROUNDS (default 3) rounds. Needs curl, wrk and bc.
#
# FLAVOUR=s3-postgres runs each server on S3 (the test S3 server, S3_TEST_SERVER, default
# target/release/s3-test-server, a fresh one per run) and PostgreSQL (a fresh database per run on
# TEST_PG_URL, e.g. $(scripts/postgres)) instead of the embedded default.
set -euo pipefail
ROUNDS=${ROUNDS:-3}
cd "$(dirname "$0")/.."
mkdir -p target
big=target/ab-1g.bin
small=target/ab-64k.bin
head -c 1073741824 /dev/urandom > "$big"
head -c 65536 /dev/urandom > "$small"
trap 'rm -f "$big" "$small"' EXIT

one() {
  local name=$1 bin=$2
  local d port pid key c0 c1 c2 c3 loc n t
  d=$(mktemp -d target/ab-XXXX)
  port=$((20000 + RANDOM % 20000))
  local s3pid=""
  : > "$d/cfg.toml"
  if [ "${FLAVOUR:-embedded}" = s3-postgres ]; then
    mkdir "$d/s3"
    "${S3_TEST_SERVER:-target/release/s3-test-server}" "$d/s3" > "$d/s3.toml" &
    s3pid=$!
    for _ in $(seq 50); do grep -q secret_access_key "$d/s3.toml" 2> /dev/null && break; sleep 0.1; done
    local db="filedock_ab_$RANDOM$RANDOM"
    psql "$TEST_PG_URL" -qc "CREATE DATABASE $db"
    printf 'default_backend = "s3"\n[backends.s3]\n%s\n[catalog]\ntype = "postgres"\nurl = "%s"\n' \
      "$(cat "$d/s3.toml")" "${TEST_PG_URL%/*}/$db" > "$d/cfg.toml"
  fi
  printf '[limits]\nrequests_per_second = 0\nmax_concurrent_uploads = 0\n' >> "$d/cfg.toml"
  (cd "$d" && exec "$bin" --config cfg.toml serve --listen "127.0.0.1:$port" > log 2>&1) &
  pid=$!
  for _ in $(seq 50); do curl -sf "http://127.0.0.1:$port/healthz" > /dev/null && break; sleep 0.1; done
  key=$(cd "$d" && "$bin" --config cfg.toml keys create --project ab --kind integration | tail -n1)
  cpu() { awk '{print $14 + $15}' "/proc/$pid/stat"; }
  c0=$(cpu)
  curl -sS -o /dev/null -X POST -H "Authorization: Bearer $key" -T "$big" "http://127.0.0.1:$port/v1/files?name=x.bin"
  c1=$(cpu)
  loc=$(curl -sS -D - -o /dev/null -X POST -H "Authorization: Bearer $key" -H "Tus-Resumable: 1.0.0" \
    -H "Upload-Length: $((500 * 65536))" "http://127.0.0.1:$port/tus/" | tr -d '\r' | sed -n 's/^[Ll]ocation: //p')
  case $loc in http*) ;; *) loc="http://127.0.0.1:$port$loc" ;; esac
  local args=()
  for i in $(seq 0 499); do
    args+=(-X PATCH -H "Authorization: Bearer $key" -H "Tus-Resumable: 1.0.0" -H "Upload-Offset: $((i * 65536))"
      -H "Content-Type: application/offset+octet-stream" --data-binary "@$small" -o /dev/null "$loc" --next)
  done
  c2=$(cpu)
  curl -sS "${args[@]}" -o /dev/null "http://127.0.0.1:$port/healthz"
  c3=$(cpu)
  printf 'wrk.method = "POST"\nwrk.body = %s\nwrk.headers["Authorization"] = "Bearer %s"\nwrk.headers["Content-Type"] = "application/json"\n' \
    "'{\"name\":\"a.bin\",\"size\":1024}'" "$key" > "$d/native.lua"
  printf 'wrk.method = "POST"\nwrk.headers["Authorization"] = "Bearer %s"\nwrk.headers["Tus-Resumable"] = "1.0.0"\nwrk.headers["Upload-Length"] = "1024"\n' \
    "$key" > "$d/tus.lua"
  n=$(wrk -t 2 -c 64 -d 5s -s "$d/native.lua" "http://127.0.0.1:$port/v1/uploads" | awk '/Requests\/sec/ {print $2}')
  t=$(wrk -t 2 -c 64 -d 5s -s "$d/tus.lua" "http://127.0.0.1:$port/tus/" | awk '/Requests\/sec/ {print $2}')
  kill "$pid"
  wait "$pid" 2> /dev/null || true
  if [ -n "$s3pid" ]; then kill "$s3pid"; wait "$s3pid" 2> /dev/null || true; fi
  rm -rf "$d"
  printf '%-10s 1 GiB POST %.2f CPU-s   500 PATCH %.2f CPU-s   presign %8.0f/s   tus creation %8.0f/s\n' \
    "$name" "$(echo "($c1 - $c0) / 100" | bc -l)" "$(echo "($c3 - $c2) / 100" | bc -l)" "$n" "$t"
}

for r in $(seq "$ROUNDS"); do
  echo "round $r"
  for pair in "$@"; do
    one "${pair%%=*}" "$(realpath "${pair#*=}")"
    sleep 2
  done
done
