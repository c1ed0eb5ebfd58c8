#!/usr/bin/env python3
"""filedock against its peers, on one machine, in one run.

Starts filedock (the embedded default: local disk + SQLite; and the scaled flavours, S3 +
PostgreSQL: on the s3s-fs test S3 server, and on moto's (Python, from PyPI: TEST_MOTO or
scripts/moto; creations and the 1 GiB upload only, and not in --quick unless TEST_MOTO is set))
and the peers: the official Node tus server (@tus/server +
@tus/file-store, default settings; "the peer" of issue 9's ratios) and rustus 0.5.10 (Rust;
installed once with `cargo install --locked` into ~/.cache/filedock-bench; run as it comes and
once more with `--force-fsync true`), and measures them alternately, round after round, beside the
machine's own limits (dd with fdatasync on the same disk, iperf3 over loopback, openssl's
SHA-256). Every MB/s figure comes with the server's CPU-seconds (utime + stime from
/proc/PID/stat) and its peak RSS (VmHWM, reset through /proc/PID/clear_refs before each run).
Medians over the rounds, ratios against the peers and the targets of issues 9 and 26 are printed
and written to bench/RESULTS.md. Then issue 26's curves (bench/scale.py), each level on a fresh
instance: creations and listing with 10^4, 10^5 and 10^6 files in the catalog, a sweep of 300,000
expired presigns (on SQLite, on PostgreSQL with s3s-fs, and on PostgreSQL with local disk: the S3
server's deletes dominate the s3s-fs run), and the memory of 10,000 open tus uploads.

    python3 bench/run.py                  # 3 rounds, 1 GiB, release build: about 40 minutes
    python3 bench/run.py --quick          # a smoke run of every scenario (CI), debug build
    python3 bench/run.py --flavours embedded --rounds 5

Needs: curl, wrk, iperf3, openssl, node + npm (the peer is installed from bench/peer's lock
file), and for the scaled flavour a PostgreSQL superuser URL in TEST_PG_URL (scripts/postgres
prints one). Servers listen on 127.0.0.1 only. Every load is bounded in count and time.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import scale  # noqa: E402  (bench/scale.py, beside this file)

ROOT = Path(__file__).resolve().parent.parent
HZ = os.sysconf("SC_CLK_TCK")
MIB = 1 << 20


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(cmd, **kw) -> subprocess.CompletedProcess:
    res = subprocess.run(cmd, text=True, capture_output=True, **kw)
    if res.returncode != 0:
        raise SystemExit(f"{' '.join(map(str, cmd))} exited with {res.returncode}:\n{res.stdout}{res.stderr[-3000:]}")
    return res


def wait_http(url: str, proc: subprocess.Popen, what: str) -> None:
    for _ in range(300):
        if proc.poll() is not None:
            raise SystemExit(f"{what} exited with {proc.returncode} before answering")
        try:
            if subprocess.run(["curl", "-fsS", "-o", "/dev/null", url], capture_output=True).returncode == 0:
                return
        except OSError:
            pass
        time.sleep(0.1)
    raise SystemExit(f"{what} did not answer {url}")


class Server:
    """A server process under measurement."""

    def __init__(self, name: str, label: str, base: str, proc: subprocess.Popen, fsync: bool, tus_path: str,
                 key: str | None, data_dir: Path, helpers: list[subprocess.Popen] | None = None,
                 db_url: str | None = None, backend: str = "local"):
        self.name, self.label, self.base, self.proc = name, label, base, proc
        self.fsync, self.tus_path, self.key, self.data_dir = fsync, tus_path, key, data_dir
        self.helpers = helpers or []
        self.db_url, self.backend = db_url, backend
        self.admin_url: str | None = None  # to drop db_url's database once stopped
        # The scenarios it takes part in, if not all: "create" and "big-native" (moto's flavour).
        self.only: set[str] | None = None

    @property
    def pid(self) -> int:
        return self.proc.pid

    def cpu(self) -> float:
        """CPU-seconds used so far (all threads)."""
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / HZ

    def reset_peak(self) -> None:
        Path(f"/proc/{self.pid}/clear_refs").write_text("5")

    def peak_mib(self) -> float:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
        return float("nan")

    def auth(self) -> list[str]:
        return ["-H", f"Authorization: Bearer {self.key}"] if self.key else []

    def stop(self) -> None:
        for p in [self.proc, *self.helpers]:
            if p is not None and p.poll() is None:
                p.send_signal(signal.SIGTERM)
                try:
                    p.wait(10)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()
        if self.db_url and self.admin_url:
            db = self.db_url.rsplit("/", 1)[1]
            subprocess.run(["psql", self.admin_url, "-q", "-c", f"DROP DATABASE IF EXISTS {db}"], capture_output=True)
            self.admin_url = None


def bench_env() -> dict:
    # filedock reads FILEDOCK_* as settings and refuses unknown ones.
    return {k: v for k, v in os.environ.items() if not k.startswith("FILEDOCK_")}


def start_filedock(bin_dir: Path, work: Path, flavour: str, pg_url: str | None, tag: str = "",
                   before_serve=None, extra: str = "") -> Server:
    """filedock on a fresh data directory (and a fresh bucket and database when scaled);
    `before_serve(server)` runs once its catalog exists, before it serves."""
    data = work / f"filedock-{flavour}{tag}"
    data.mkdir()
    port = free_port()
    # No per-project rate limit or upload cap (the peer has none); everything else is the default,
    # fsync before the answer included.
    limits = "[limits]\nrequests_per_second = 0\nmax_concurrent_uploads = 0\n"
    config = extra
    helpers = []
    db_url = None
    if flavour in ("s3-postgres", "moto-postgres", "disk-postgres"):
        db = "filedock_bench_" + uuid.uuid4().hex[:12]
        db_url = pg_url.rsplit("/", 1)[0] + "/" + db
        run(["psql", pg_url, "-q", "-c", f"CREATE DATABASE {db}"])
        if flavour != "disk-postgres":
            backend = start_s3(bin_dir, work, flavour, tag, helpers)
            config += f'default_backend = "s3"\n[backends.s3]\n{backend}\n'
        config += f'[catalog]\ntype = "postgres"\nurl = "{db_url}"\n'
    cfg = data / "filedock.toml"
    cfg.write_text(config + limits)
    fd = [str(bin_dir / "filedock"), "--config", str(cfg), "--data-dir", str(data)]
    key = run([*fd, "keys", "create", "--project", "bench", "--kind", "session"], env=bench_env()).stdout.split()[-1]
    label = {"embedded": "filedock", "s3-postgres": "filedock S3+PG", "disk-postgres": "filedock disk+PG"}.get(
        flavour, "filedock moto+PG")
    base = f"http://127.0.0.1:{port}"
    srv = Server(f"filedock-{flavour}{tag}", label, base, None, True, "/tus", key, data, helpers, db_url,
                 "local" if flavour in ("embedded", "disk-postgres") else "s3")
    srv.admin_url = pg_url if db_url else None
    if flavour == "moto-postgres":
        # moto is Python: it takes the creations and the one 1 GiB upload, which issue 26 asks of
        # it (what bounds S3 + PostgreSQL), not the PATCH and concurrency rounds.
        srv.only = {"create", "big-native"}
    if before_serve:
        before_serve(srv)
    env = bench_env() | {"RUST_LOG": "warn"}
    srv.started = time.monotonic()
    srv.proc = subprocess.Popen([*fd, "serve", "--listen", f"127.0.0.1:{port}"], env=env,
                                stdout=subprocess.DEVNULL, stderr=open(work / f"filedock-{flavour}{tag}.log", "w"))
    wait_http(base + "/healthz", srv.proc, f"filedock ({flavour})")
    return srv


def start_s3(bin_dir: Path, work: Path, flavour: str, tag: str, helpers: list) -> str:
    """The S3 server of a scaled flavour, started fresh with one empty bucket: the test S3 server
    (s3s-fs, Rust, in the repository) or moto's (`moto[server]` from PyPI, Python; TEST_MOTO or
    scripts/moto). Returns the `[backends.s3]` lines for it."""
    if flavour == "s3-postgres":
        s3_dir = work / f"s3{tag}"
        s3_dir.mkdir()
        s3 = subprocess.Popen([str(bin_dir / "s3-test-server"), str(s3_dir)], stdout=subprocess.PIPE, text=True)
        helpers.append(s3)
        backend = ""
        while not backend.rstrip().endswith('"') or "secret_access_key" not in backend:
            line = s3.stdout.readline()
            if not line:
                raise SystemExit("s3-test-server did not start")
            backend += line
        return backend
    moto = os.environ.get("TEST_MOTO") or run(["bash", str(ROOT / "scripts/moto")]).stdout.strip()
    port = free_port()
    proc = subprocess.Popen([moto, "-H", "127.0.0.1", "-p", str(port)], stdout=subprocess.DEVNULL,
                            stderr=open(work / f"moto{tag}.log", "w"))
    helpers.append(proc)
    endpoint = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            req = urllib.request.Request(endpoint + "/bench", method="PUT")
            urllib.request.urlopen(req, timeout=2).read()
            break
        except (urllib.error.URLError, ConnectionError):
            if time.monotonic() > deadline or proc.poll() is not None:
                raise SystemExit("moto's S3 server did not start")
            time.sleep(0.2)
    return (f'type = "s3"\nendpoint = "{endpoint}"\nbucket = "bench"\npath_style = true\n'
            'access_key_id = "bench"\nsecret_access_key = "bench"\n')


def start_peer(work: Path) -> Server:
    data = work / "peer"
    data.mkdir()
    port = free_port()
    proc = subprocess.Popen(["node", str(ROOT / "bench/peer/server.mjs"), str(port), str(data)],
                            stdout=subprocess.DEVNULL, stderr=open(work / "peer.log", "w"))
    base = f"http://127.0.0.1:{port}"
    wait_http(base + "/healthz", proc, "the peer")
    return Server("peer", "@tus/server", base, proc, False, "/files", None, data)


RUSTUS_VERSION = "0.5.10"


def rustus_bin(install: bool = True) -> Path:
    """rustus, installed once by cargo into a cache the bench keeps (~/.cache/filedock-bench)."""
    root = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "filedock-bench" / f"rustus-{RUSTUS_VERSION}"
    exe = root / "bin" / "rustus"
    if install and not exe.exists():
        log(f"installing rustus {RUSTUS_VERSION} (cargo install --locked, a few minutes, once)")
        subprocess.run(["cargo", "install", "rustus", "--version", RUSTUS_VERSION, "--locked", "--root", str(root)],
                       check=True, stdout=subprocess.DEVNULL)
    return exe


def wait_tcp(port: int, proc: subprocess.Popen, what: str) -> None:
    for _ in range(300):
        if proc.poll() is not None:
            raise SystemExit(f"{what} exited with {proc.returncode} before listening")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"{what} did not listen on {port}")


def start_rustus(work: Path, fsync: bool, max_body: int) -> Server:
    """rustus with its defaults (file storage, file info storage), its body limit raised to the
    largest single request of the run, and, once more, with `--force-fsync`."""
    name = "rustus-fsync" if fsync else "rustus"
    data = work / name
    data.mkdir()
    port = free_port()
    cmd = [str(rustus_bin()), "--host", "127.0.0.1", "--port", str(port), "--data-dir", str(data),
           "--info-dir", str(data), "--url", "/files", "--max-body-size", str(max_body), "--log-level", "ERROR"]
    if fsync:
        cmd += ["--force-fsync", "true"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=open(work / f"{name}.log", "w"))
    wait_tcp(port, proc, name)
    label = f"rustus {RUSTUS_VERSION}" + (" fsync" if fsync else "")
    return Server(name, label, f"http://127.0.0.1:{port}", proc, fsync, "/files", None, data)


# --- the machine's limits -----------------------------------------------------------------------

def dd_fdatasync(work: Path, mib: int) -> dict:
    out = work / "dd.bin"
    t0 = time.monotonic()
    run(["dd", "if=/dev/zero", f"of={out}", "bs=1M", f"count={mib}", "conv=fdatasync"])
    secs = time.monotonic() - t0
    out.unlink()
    return {"mbps": mib * MIB / 1e6 / secs, "secs": secs}


def dd_dsync(work: Path, count: int, size: int) -> dict:
    """`count` writes of `size` bytes, each synced before the next (O_DSYNC): what the disk asks
    of a server that syncs every PATCH before it answers, as filedock does."""
    out = work / "dd-dsync.bin"
    t0 = time.monotonic()
    run(["dd", "if=/dev/zero", f"of={out}", f"bs={size}", f"count={count}", "oflag=dsync"])
    secs = time.monotonic() - t0
    out.unlink()
    return {"ms_per_write": secs * 1000 / count}


def iperf3(secs: int) -> float:
    """Loopback TCP MB/s. Each attempt has its own one-off server; an attempt that fails (an exit
    code, or JSON with an error and no result, as when the client came before the server
    listened) is tried again."""
    last = ""
    for attempt in range(8):
        port = free_port()
        srv = subprocess.Popen(["iperf3", "-s", "-1", "-B", "127.0.0.1", "-p", str(port)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            time.sleep(0.2 + 0.2 * attempt)
            res = subprocess.run(["iperf3", "-c", "127.0.0.1", "-p", str(port), "-t", str(secs), "-J"],
                                 capture_output=True, text=True)
            try:
                return json.loads(res.stdout)["end"]["sum_received"]["bits_per_second"] / 8e6
            except (ValueError, KeyError) as e:
                last = f"exit {res.returncode}, no {e}: {res.stdout[-300:]} {res.stderr[-200:]}"
        finally:
            srv.kill()
            srv.wait()
    raise SystemExit(f"iperf3 did not run: {last}")


def sha256_speed() -> float:
    res = run(["openssl", "speed", "-evp", "sha256", "-seconds", "2", "-bytes", "1048576"])
    line = [x for x in res.stdout.splitlines() if x.lower().startswith("sha256")][-1]
    return float(line.split()[-1].rstrip("k")) * 1000 / 1e6  # openssl prints 1000s of bytes/s


# --- scenarios ------------------------------------------------------------------------------------

def curl_json(args: list[str]) -> dict:
    return json.loads(run(["curl", "-sS", "-f", *args]).stdout)


def tus_create(srv: Server, length: int) -> str:
    res = run(["curl", "-sS", "-f", "-D", "-", "-o", "/dev/null", "-X", "POST", *srv.auth(),
               "-H", "Tus-Resumable: 1.0.0", "-H", f"Upload-Length: {length}",
               "-H", f"Upload-Metadata: filename {__import__('base64').b64encode(b'bench.bin').decode()}",
               srv.base + srv.tus_path])
    loc = [h.split(":", 1)[1].strip() for h in res.stdout.splitlines() if h.lower().startswith("location:")][0]
    return loc if loc.startswith("http") else srv.base + loc


def upload_cmd(srv: Server, mode: str, path: Path, size: int) -> list[str]:
    """The curl command that sends `path` in one request (creating a tus upload first)."""
    common = ["curl", "-sS", "-f", "-o", "/dev/null", "-H", "Expect:", *srv.auth()]
    if mode == "native":
        return [*common, "-X", "POST", "-H", "Content-Type: application/octet-stream", "-T", str(path),
                srv.base + "/v1/files?name=bench.bin"]
    url = tus_create(srv, size)
    return [*common, "-X", "PATCH", "-H", "Tus-Resumable: 1.0.0", "-H", "Upload-Offset: 0",
            "-H", "Content-Type: application/offset+octet-stream", "-T", str(path), url]


def measure(srv: Server, fn) -> dict:
    srv.reset_peak()
    c0, t0 = srv.cpu(), time.monotonic()
    extra = fn() or {}
    secs, cpu = time.monotonic() - t0, srv.cpu() - c0
    return {"secs": secs, "cpu": cpu, "rss": srv.peak_mib(), **extra}


def big_upload(srv: Server, mode: str, path: Path, size: int) -> dict:
    cmd = upload_cmd(srv, mode, path, size)
    m = measure(srv, lambda: run(cmd) and None)
    gib = size / (1 << 30)
    return {"mbps": size / 1e6 / m["secs"], "cpu_per_gib": m["cpu"] / gib, "rss": m["rss"], "secs": m["secs"]}


def patches(srv: Server, count: int, chunk: int) -> dict:
    """`count` tus PATCHes of `chunk` bytes, one after another on one keep-alive connection."""
    url = tus_create(srv, count * chunk)
    path = "/" + url.split("/", 3)[3]
    host, port = srv.base.split("//")[1].split(":")
    body = os.urandom(chunk)
    auth = f"Authorization: Bearer {srv.key}\r\n" if srv.key else ""

    def go():
        with socket.create_connection((host, int(port))) as s:
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            f = s.makefile("rb")
            for i in range(count):
                head = (f"PATCH {path} HTTP/1.1\r\nHost: {host}:{port}\r\n{auth}Tus-Resumable: 1.0.0\r\n"
                        f"Upload-Offset: {i * chunk}\r\nContent-Type: application/offset+octet-stream\r\n"
                        f"Content-Length: {chunk}\r\n\r\n").encode()
                s.sendall(head + body)
                status = f.readline()
                if b" 204 " not in status:
                    raise SystemExit(f"PATCH {i} to {srv.label}: {status!r}")
                length = 0
                while (line := f.readline()) not in (b"\r\n", b""):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":")[1])
                f.read(length)

    m = measure(srv, go)
    return {"ms_per_patch": m["secs"] * 1000 / count, "cpu_ms_per_patch": m["cpu"] * 1000 / count, "rss": m["rss"]}


WRK_LUA = """
wrk.method = "POST"
wrk.body = {body}
{headers}
"""


def creations(srv: Server, kind: str, work: Path, secs: int, conns: int) -> dict:
    headers = {"Authorization": f"Bearer {srv.key}"} if srv.key else {}
    body = ""
    if kind == "tus":
        path = srv.tus_path
        headers |= {"Tus-Resumable": "1.0.0", "Upload-Length": "1024"}
    elif kind == "native":
        path, body = "/v1/uploads", json.dumps({"name": "a.bin", "size": 1024})
        headers["Content-Type"] = "application/json"
    else:  # cyberun
        path, body = "/api/v1/r/files/presign", json.dumps({"file_name": "a.bin", "file_size": 1024})
        headers["Content-Type"] = "application/json"
    script = work / f"wrk-{srv.name}-{kind}.lua"
    script.write_text(WRK_LUA.format(body=json.dumps(body) if body else "nil",
                                     headers="\n".join(f"wrk.headers[{json.dumps(k)}] = {json.dumps(v)}"
                                                       for k, v in headers.items())))
    out = {}

    def go():
        res = run(["wrk", "-t", "2", "-c", str(conns), "-d", f"{secs}s", "--latency", "-s", str(script),
                   srv.base + path])
        out["text"] = res.stdout

    m = measure(srv, go)
    text = out["text"]
    total = int(re.search(r"(\d+) requests in", text).group(1))
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    if bad or (errors and any(int(x) for x in errors.groups())):
        raise SystemExit(f"creations on {srv.label} ({kind}) had failures:\n{text}")

    def ms(v: str) -> float:
        num, unit = re.fullmatch(r"([\d.]+)(us|ms|s|m)", v).groups()
        return float(num) * {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3}[unit]

    # The latency distribution's own line (not a "+/- Stdev" figure such as "75.99%").
    p99 = ms(re.search(r"^\s+99%\s+(\S+)\s*$", text, re.MULTILINE).group(1))
    return {"per_sec": total / m["secs"], "p99_ms": p99, "cpu_ms": m["cpu"] * 1000 / total, "rss": m["rss"],
            "total": total}


def concurrent_uploads(srv: Server, mode: str, path: Path, size: int, n: int) -> dict:
    cmds = [upload_cmd(srv, mode, path, size) for _ in range(n)]

    def go():
        procs = [subprocess.Popen(c, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE) for c in cmds]
        for p in procs:
            _, err = p.communicate(timeout=600)
            if p.returncode != 0:
                raise SystemExit(f"a concurrent upload to {srv.label} failed: {err.decode()}")

    m = measure(srv, go)
    return {"mbps": n * size / 1e6 / m["secs"], "cpu_per_gib": m["cpu"] / (n * size / (1 << 30)), "rss": m["rss"]}


def clear_uploads(srv: Server) -> None:
    """Removes what the big uploads stored (a few large files: no mass deletion)."""
    if srv.key is None:
        for f in list(srv.data_dir.iterdir()):
            if f.suffix not in (".json", ".info") and f.is_file() and f.stat().st_size > MIB:
                f.unlink()
                (f.parent / (f.name + ".json")).unlink(missing_ok=True)
                (f.parent / (f.name + ".info")).unlink(missing_ok=True)
        return
    listing = curl_json([*srv.auth(), srv.base + "/v1/files?limit=1000"])
    for f in listing["files"]:
        if f.get("size", 0) > MIB:
            run(["curl", "-sS", "-f", "-X", "DELETE", *srv.auth(), srv.base + f"/v1/files/{f['id']}"])


# --- the run --------------------------------------------------------------------------------------

def versions(bin_dir: Path) -> dict:
    def out(cmd):
        try:
            res = subprocess.run(cmd, text=True, capture_output=True)
            return (res.stdout + res.stderr).strip().splitlines()[0]
        except (OSError, IndexError):
            return "?"
    peer_pkg = json.loads((ROOT / "bench/peer/node_modules/@tus/server/package.json").read_text())["version"]
    store_pkg = json.loads((ROOT / "bench/peer/node_modules/@tus/file-store/package.json").read_text())["version"]
    cpu = next((l.split(":", 1)[1].strip() for l in Path("/proc/cpuinfo").read_text().splitlines()
                if l.startswith("model name")), "?")
    mem = int(Path("/proc/meminfo").read_text().split()[1]) / (1 << 20)
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": f"{os.cpu_count()} cores ({cpu}), {mem:.1f} GiB RAM, Linux {platform.release()}",
        "filedock": out(["git", "-C", str(ROOT), "describe", "--always", "--dirty"]),
        "rustc": out(["rustc", "--version"]),
        "peer": f"@tus/server {peer_pkg} + @tus/file-store {store_pkg} on Node {out(['node', '--version'])}",
        "tools": f"{out(['curl', '--version']).split(' (')[0]}, {' '.join(out(['wrk', '-v']).split()[:2])}, "
                 f"{out(['iperf3', '--version']).split(' (')[0]}, {out(['openssl', 'version'])[:15]}",
        "fs": out(["findmnt", "-n", "-o", "FSTYPE,SOURCE", "-T", str(ROOT / "target")]),
    }


def median(xs):
    return statistics.median(xs) if xs else float("nan")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--size-mib", type=int, default=1024, help="the single-request upload")
    ap.add_argument("--creation-secs", type=int, default=10)
    ap.add_argument("--pause", type=float, default=3.0, help="seconds between runs, so each starts as cold")
    ap.add_argument("--flavours", default="embedded,s3-postgres,moto-postgres")
    ap.add_argument("--profile", default="release")
    ap.add_argument("--parts", default="rounds,scale",
                    help="rounds (the side-by-side rounds), scale (issue 26's curves: grow and sweep, "
                         "each also alone), or both")
    ap.add_argument("--quick", action="store_true", help="smoke run: 1 round, small sizes, debug build")
    ap.add_argument("--out", default=str(ROOT / "bench/RESULTS.md"), help="'-' for none")
    a = ap.parse_args()
    if a.quick:
        a.rounds, a.size_mib, a.creation_secs, a.pause, a.profile = 1, 64, 2, 0.5, "dev"
        if a.out == str(ROOT / "bench/RESULTS.md"):
            a.out = "-"
    patch_count, patch_size = (1024, 64 * 1024) if not a.quick else (128, 64 * 1024)
    conc_n, conc_size = (64, 16 * MIB) if not a.quick else (8, 2 * MIB)
    flavours = [f for f in a.flavours.split(",") if f]
    pg_url = os.environ.get("TEST_PG_URL")
    if a.quick and not os.environ.get("TEST_MOTO") and "moto-postgres" in flavours:
        flavours.remove("moto-postgres")  # a smoke run does not install moto
    if {"s3-postgres", "moto-postgres"} & set(flavours) and not pg_url:
        raise SystemExit("the scaled flavours need TEST_PG_URL (export TEST_PG_URL=$(bash scripts/postgres))")

    log(f"building filedock and the test S3 server ({a.profile})")
    subprocess.run(["cargo", "build", "--locked", "-q", "--profile", a.profile, "-p", "filedock",
                    "-p", "filedock-testkit", "--bin", "filedock", "--bin", "s3-test-server"], check=True, cwd=ROOT)
    bin_dir = ROOT / "target" / ("debug" if a.profile == "dev" else a.profile)
    if not (ROOT / "bench/peer/node_modules/@tus/server").is_dir():
        log("installing the peer (npm ci in bench/peer)")
        subprocess.run(["npm", "ci", "--no-audit", "--no-fund", "--silent"], check=True, cwd=ROOT / "bench/peer")

    (ROOT / "target").mkdir(exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="bench-", dir=ROOT / "target"))
    servers: list[Server] = []
    results: dict = {}

    def add(key, value):
        results.setdefault(key, []).append(value)

    try:
        for f in flavours:
            servers.append(start_filedock(bin_dir, work, f, pg_url))
        peer = start_peer(work)
        servers.append(peer)
        max_body = max(a.size_mib * MIB, conc_size) + MIB
        if not a.quick:
            servers.extend([start_rustus(work, False, max_body), start_rustus(work, True, max_body)])
        elif rustus_bin(install=False).exists():
            servers.append(start_rustus(work, False, max_body))
        else:
            log("--quick: rustus is not installed (a full run installs it); the smoke run goes without it")
        big = work / "upload.bin"
        with open(big, "wb") as out:
            for _ in range(a.size_mib):
                out.write(os.urandom(MIB))
        small = work / "conc.bin"
        small.write_bytes(os.urandom(conc_size))
        subprocess.run(["cat", str(big), str(small)], stdout=subprocess.DEVNULL, check=True)  # into the page cache

        results["limits"] = {"iperf3_mbps": iperf3(2 if a.quick else 5), "sha256_mbps": sha256_speed()}
        fd_servers = [s for s in servers if s.key]
        # On fresh processes, before anything else has grown or shrunk their heaps.
        for srv in (s for s in servers if not s.only):
            add(("open", srv.name), scale.open_uploads(srv, 1_000 if a.quick else 10_000))
            log(f"  {srv.label:15} open tus upload: {results[('open', srv.name)][-1]['bytes_each']:.0f} bytes each")
        for r in range(a.rounds if "rounds" in a.parts else 0):
            log(f"round {r + 1}/{a.rounds}")
            # Creation first, on fresh directories: ext4 here slows file creation after deletions.
            for srv in servers:
                kinds = ["native", "cyberun", "tus"] if srv.key else ["tus"]
                for kind in kinds:
                    time.sleep(a.pause)
                    add((srv.name, "create", kind), creations(srv, kind, work, a.creation_secs, 64))
                    log(f"  {srv.label:15} create {kind:8} {results[(srv.name, 'create', kind)][-1]['per_sec']:9.0f}/s")
            for srv in (s for s in servers if not s.only):
                time.sleep(a.pause)
                add((srv.name, "patches"), patches(srv, patch_count, patch_size))
                log(f"  {srv.label:15} PATCH 64 KiB  {results[(srv.name, 'patches')][-1]['ms_per_patch']:.3f} ms")
            time.sleep(a.pause)
            add(("dsync",), dd_dsync(work, patch_count, patch_size))
            log(f"  dd 64 KiB dsync         {results[('dsync',)][-1]['ms_per_write']:.3f} ms")
            size = a.size_mib * MIB
            for srv in servers:
                for mode in (["native", "tus"] if srv.key else ["tus"]):
                    if srv.only and f"big-{mode}" not in srv.only:
                        continue
                    time.sleep(a.pause)
                    add((srv.name, "big", mode), big_upload(srv, mode, big, size))
                    log(f"  {srv.label:15} {a.size_mib} MiB {mode:6} {results[(srv.name, 'big', mode)][-1]['mbps']:7.1f} MB/s")
                    clear_uploads(srv)
                time.sleep(a.pause)
                add(("dd",), dd_fdatasync(work, a.size_mib))
                log(f"  dd fdatasync            {results[('dd',)][-1]['mbps']:7.1f} MB/s")
            for srv in (s for s in servers if not s.only):
                mode = "native" if srv.key else "tus"
                time.sleep(a.pause)
                add((srv.name, "conc", mode), concurrent_uploads(srv, mode, small, conc_size, conc_n))
                log(f"  {srv.label:15} {conc_n} x {conc_size // MIB} MiB  peak RSS {results[(srv.name, 'conc', mode)][-1]['rss']:.1f} MiB")
                clear_uploads(srv)
        for s in servers:
            s.stop()
        if {"scale", "grow", "sweep"} & set(a.parts.split(",")):
            grow_and_sweep(a, bin_dir, work, [f for f in flavours if f != "moto-postgres"], pg_url, add, results)
    finally:
        for s in servers:
            s.stop()

    report = render(results, versions(bin_dir), a, servers, fd_servers, peer, patch_count, patch_size, conc_n, conc_size)
    print(report)
    if a.out != "-":
        Path(a.out).write_text(report)
        raw = {" ".join(k) if isinstance(k, tuple) else k: v for k, v in results.items()}
        Path(a.out).with_name("results.json").write_text(json.dumps(raw, indent=1) + "\n")
        log(f"written to {a.out} and results.json beside it")
    shutil.rmtree(work, ignore_errors=True)
    log("note: the work directory was deleted; ext4 slows file creation for minutes after that, "
        "so wait before measuring creation again")


def grow_and_sweep(a, bin_dir: Path, work: Path, flavours: list[str], pg_url, add, results) -> None:
    """Issue 26's curves, each level on a fresh instance: creations and listing with 10^4..10^6
    files in the catalog, then a sweep of many expired rows."""
    parts = set(a.parts.split(","))
    levels = [0, 10_000] if a.quick else [0, 10_000, 100_000, 1_000_000]
    if not {"scale", "grow"} & parts:
        levels = []
    # Rounds, as for the other figures: one run per level swung ±25% with the machine (a slow
    # minute in one level's run read as growth), so each level runs once a round, on a fresh
    # instance, the levels in turn forward and backward; the verdicts take medians.
    for r in range(a.rounds if levels else 0):
        log(f"catalog growth, round {r + 1}/{a.rounds}")
        for f in flavours:
            grow(a, bin_dir, work, f, pg_url, add, levels if r % 2 == 0 else levels[::-1], listing=r == 0)
    # PostgreSQL's sweep also on local disk: on s3s-fs, the S3 server's deletes (one blocking
    # task per key) take most of the two cores' time, so that run measures the S3 server. In
    # rounds too: the idle p99 a sweep is held to moved from 2.3 to 3.7 ms between single runs.
    for r in range(a.rounds if {"scale", "sweep"} & parts else 0):
        log(f"sweeps, round {r + 1}/{a.rounds}")
        for f in flavours + (["disk-postgres"] if "s3-postgres" in flavours else []):
            sweep_one(a, bin_dir, work, f, pg_url, add, results)


def grow(a, bin_dir: Path, work: Path, f: str, pg_url, add, levels: list[int], listing: bool) -> None:
    """Creations (and, if `listing`, listing) with each level's files in the catalog, each on a
    fresh instance."""
    for level in levels:
        def seed_level(srv, level=level):
            if level:
                log(f"  seeding {level} files ({f}): {scale.seed(srv, '00000001', level, 'ready'):.1f} s")
        srv = start_filedock(bin_dir, work, f, pg_url, tag=f"-grow{level}-{uuid.uuid4().hex[:6]}",
                             before_serve=seed_level)
        try:
            scale.settle(srv)
            g = {"rows": scale.count_files(srv)}
            for kind in ["native", "tus"]:
                time.sleep(a.pause)
                g[kind] = creations(srv, kind, work, a.creation_secs, 64)
            if listing:
                g["list"] = scale.listing(srv, 200 if a.quick else 20_000)
            add(("grow", f, str(level)), g)
            walked = f", list page {g['list']['page_ms']:.2f} ms ({g['list']['pages']} pages)" if listing else ""
            log(f"  {srv.label:15} {level:>8} files: presign {g['native']['per_sec']:.0f}/s "
                f"p99 {g['native']['p99_ms']:.2f} ms, tus {g['tus']['per_sec']:.0f}/s{walked}")
        finally:
            srv.stop()


def sweep_one(a, bin_dir: Path, work: Path, f: str, pg_url, add, results) -> None:
    """A sweep of many expired pending presigns on a fresh instance, presigns beside it."""
    rows = 20_000 if a.quick else 300_000
    load = 2 if a.quick else 5
    # They expire once the server has started, scanned and been measured idle.
    expires = scale.now_ms() + (30_000 if a.quick else 60_000)
    srv = start_filedock(bin_dir, work, f, pg_url, tag=f"-sweep-{uuid.uuid4().hex[:6]}", extra="sweep_interval_secs = 1\n",
                         before_serve=lambda s: scale.seed(s, "00000002", rows, "pending", expires))
    try:
        add(("sweep", f), scale.sweep(srv, work, rows, load, expires))
        sw = results[("sweep", f)][-1]
        log(f"  {srv.label:15} sweep of {rows}: {sw['rows_per_sec']:.0f} rows/s, p99 {sw['p99_busy_ms']:.2f} ms "
            f"(idle {sw['p99_idle_ms']:.2f}), peak RSS {sw['rss']:.1f} MiB, CPU-s: filedock {sw['cpu']:.1f}, "
            f"S3 server {sw['cpu_s3']:.1f}")
    finally:
        srv.stop()


def render(results, v, a, servers, fd_servers, peer, patch_count, patch_size, conc_n, conc_size) -> str:
    def med(key, field):
        return median([x[field] for x in results.get(key, [])])

    p = peer.name
    L = []
    L.append("# filedock benchmark results\n")
    L.append(f"Written by `python3 bench/run.py{' --quick' if a.quick else ''}` "
             f"({a.rounds} round{'s' if a.rounds != 1 else ''}, medians; servers alternate within each round).\n")
    for k in ["date", "machine", "filedock", "rustc", "peer", "tools", "fs"]:
        L.append(f"- **{k}**: {v[k]}")
    lim = results["limits"]
    dd = med(("dd",), "mbps")
    L.append("\n## The machine's limits\n")
    L.append(f"- `dd if=/dev/zero bs=1M count={a.size_mib} conv=fdatasync` on the same disk: **{dd:.0f} MB/s** (median)")
    dsync = med(("dsync",), "ms_per_write")
    L.append(f"- `dd if=/dev/zero bs={patch_size // 1024}k count={patch_count} oflag=dsync` on the same disk "
             f"(each write synced, as filedock syncs each PATCH): **{dsync:.3f} ms per write** (median)")
    L.append(f"- loopback TCP (iperf3): **{lim['iperf3_mbps']:.0f} MB/s**")
    L.append(f"- SHA-256 (`openssl speed -evp sha256`, 1 MiB blocks): **{lim['sha256_mbps']:.0f} MB/s** "
             f"= {1024 * 1.048576 / lim['sha256_mbps']:.2f} CPU-s per GiB")
    L.append("\nfiledock fsyncs every file before it answers (its default); the peer does not fsync. "
             "filedock runs with its rate limit and upload cap off (the peer has neither).\n")

    def row(cells):
        return "| " + " | ".join(cells) + " |"

    # 1 GiB
    L.append(f"## One {a.size_mib} MiB upload in one request\n")
    L.append(row(["server", "route", "MB/s", "CPU-s per GiB", "peak RSS MiB", "vs peer MB/s", "vs dd"]))
    L.append(row(["---"] * 7))
    peer_mbps = med((p, "big", "tus"), "mbps")
    for s in servers:
        for mode in (["native", "tus"] if s.key else ["tus"]):
            k = (s.name, "big", mode)
            if k not in results:
                continue
            mbps = med(k, "mbps")
            L.append(row([s.label, "POST /v1/files" if mode == "native" else "tus PATCH", f"{mbps:.0f}",
                          f"{med(k, 'cpu_per_gib'):.2f}", f"{med(k, 'rss'):.1f}", f"{mbps / peer_mbps:.2f}×",
                          f"{mbps / dd:.2f}×"]))
    # PATCH overhead
    L.append(f"\n## {patch_count} tus PATCHes of {patch_size // 1024} KiB on one connection\n")
    L.append(row(["server", "ms per PATCH (wall)", "server CPU ms per PATCH", "speed vs peer",
                  "ms above dd's synced write"]))
    L.append(row(["---"] * 5))
    peer_patch = med((p, "patches"), "ms_per_patch")
    for s in (s for s in servers if (s.name, "patches") in results):
        k = (s.name, "patches")
        above = f"{med(k, 'ms_per_patch') - dsync:.3f}" if s.fsync else "(does not sync)"
        L.append(row([s.label, f"{med(k, 'ms_per_patch'):.3f}", f"{med(k, 'cpu_ms_per_patch'):.3f}",
                      f"{peer_patch / med(k, 'ms_per_patch'):.2f}×", above]))
    L.append(row([f"dd, {patch_count} synced writes of {patch_size // 1024} KiB", f"{dsync:.3f}", "", "", ""]))
    # creations
    L.append(f"\n## Creations at 64 concurrent for {a.creation_secs} s (wrk)\n")
    L.append(row(["server", "creation", "per second", "p99 ms", "CPU ms each", "peak RSS MiB", "vs peer"]))
    L.append(row(["---"] * 7))
    peer_rate = med((p, "create", "tus"), "per_sec")
    names = {"native": "presign POST /v1/uploads", "cyberun": "presign POST /api/v1/r/files/presign",
             "tus": "tus POST"}
    for s in servers:
        for kind in (["native", "cyberun", "tus"] if s.key else ["tus"]):
            k = (s.name, "create", kind)
            L.append(row([s.label, names[kind], f"{med(k, 'per_sec'):.0f}", f"{med(k, 'p99_ms'):.2f}",
                          f"{med(k, 'cpu_ms'):.3f}", f"{med(k, 'rss'):.1f}",
                          f"{med(k, 'per_sec') / peer_rate:.2f}×"]))
    # concurrent
    L.append(f"\n## {conc_n} concurrent uploads of {conc_size // MIB} MiB\n")
    L.append(row(["server", "route", "MB/s (all)", "CPU-s per GiB", "peak RSS MiB"]))
    L.append(row(["---"] * 5))
    for s in (s for s in servers if not s.only):
        mode = "native" if s.key else "tus"
        k = (s.name, "conc", mode)
        L.append(row([s.label, "POST /v1/files" if mode == "native" else "tus PATCH", f"{med(k, 'mbps'):.0f}",
                      f"{med(k, 'cpu_per_gib'):.2f}", f"{med(k, 'rss'):.1f}"]))
    # targets
    fd_servers = [s for s in fd_servers if not s.only]
    L.append("\n## Targets (issue 9), on the embedded default and on S3 + PostgreSQL\n")
    L.append(row(["target", *[s.label for s in fd_servers]]))
    L.append(row(["---"] * (1 + len(fd_servers))))
    peer_cpu = med((p, "big", "tus"), "cpu_per_gib")

    def check(ok: bool, text: str) -> str:
        return f"{'✅' if ok else '❌'} {text}"

    checks = []
    cells = []
    for s in fd_servers:
        c = med((s.name, "big", "native"), "cpu_per_gib")
        cells.append(check(c <= 0.25 * peer_cpu, f"{c:.2f} vs {peer_cpu:.2f} = {c / peer_cpu:.2f}×"))
    checks.append(("1 GiB upload CPU-s/GiB ≤ 0.25× the peer's", cells))
    cells = []
    for s in fd_servers:
        m = med((s.name, "big", "native"), "mbps")
        cells.append(check(m >= peer_mbps, f"{m / peer_mbps:.2f}×"))
    checks.append(("1 GiB upload MB/s ≥ 1.0× the peer's", cells))
    cells = []
    for s in fd_servers:
        m = med((s.name, "big", "native"), "mbps")
        cells.append(check(m >= 0.85 * dd, f"{m / dd:.2f}×"))
    checks.append(("1 GiB upload MB/s ≥ 0.85× dd with fdatasync", cells))
    cells = []
    for s in fd_servers:
        m = med((s.name, "patches"), "ms_per_patch")
        cells.append(check(m <= 0.2, f"{m:.3f} ms"))
    checks.append((f"{patch_count} PATCHes of 64 KiB ≤ 0.2 ms each", cells))
    cells = []
    for s in fd_servers:
        m = med((s.name, "patches"), "ms_per_patch") - dsync
        cells.append(check(m <= 0.2, f"{m:.3f} ms above {dsync:.3f} ms"))
    checks.append((f"(beside it) the same, less dd's synced {patch_size // 1024} KiB write", cells))
    for kind in ["native", "cyberun", "tus"]:
        cells = []
        for s in fd_servers:
            k = (s.name, "create", kind)
            rate, p99, cpu = med(k, "per_sec"), med(k, "p99_ms"), med(k, "cpu_ms")
            ok = rate >= 5 * peer_rate and p99 <= 10 and cpu <= 0.1
            cells.append(check(ok, f"{rate / peer_rate:.2f}×, p99 {p99:.1f} ms, {cpu:.3f} ms CPU"))
        checks.append((f"{names[kind]}: ≥ 5× the peer's rate, p99 ≤ 10 ms, CPU ≤ 0.1 ms", cells))
    cells = []
    for s in fd_servers:
        r = med((s.name, "big", "native"), "rss")
        cells.append(check(r <= 48, f"{r:.1f} MiB"))
    checks.append(("peak RSS ≤ 48 MiB during the 1 GiB upload", cells))
    cells = []
    for s in fd_servers:
        r = max(med((s.name, "create", k), "rss") for k in ["native", "cyberun", "tus"])
        cells.append(check(r <= 64, f"{r:.1f} MiB"))
    checks.append(("peak RSS ≤ 64 MiB during the creation runs", cells))
    cells = []
    for s in fd_servers:
        r = med((s.name, "conc", "native"), "rss")
        cells.append(check(r <= 128, f"{r:.1f} MiB"))
    checks.append((f"peak RSS ≤ 128 MiB with {conc_n} concurrent {conc_size // MIB} MiB uploads", cells))
    for name, cs in checks:
        L.append(row([name, *cs]))
    L.extend(render26(results, a, servers, [s for s in servers if s.key], dsync, lim["sha256_mbps"], names))
    L.append("\nRaw figures of every round: `bench/results.json` beside this file.\n" if a.out != "-" else "")
    return "\n".join(L) + "\n"


def render26(results, a, servers, fd_servers, dsync, sha_mbps, names) -> list[str]:
    """Issue 26: open uploads, the growth curves, the sweep, and every target with its verdict."""
    def med(key, field):
        return median([x[field] for x in results.get(key, [])])

    def row(cells):
        return "| " + " | ".join(cells) + " |"

    def check(ok: bool, text: str) -> str:
        return f"{'✅' if ok else '❌'} {text}"

    L = ["\n## Open tus uploads: resident memory each\n", row(["server", "uploads left open", "bytes each"]),
         row(["---"] * 3)]
    for s in servers:
        if ("open", s.name) in results:
            L.append(row([s.label, str(results[("open", s.name)][-1]["count"]),
                          f"{med(('open', s.name), 'bytes_each'):.0f}"]))
    L.append(f"\n## As the catalog grows (each level a fresh instance each round; 64 concurrent creations; medians of {a.rounds} "
             "rounds, the levels in turn; listing walked in the first)\n")
    L.append(row(["flavour", "files seeded", "rows at start", "presign/s", "presign p99 ms", "tus/s", "tus p99 ms",
                  "newest 100 ms", "ms per page (median; first tenth; last tenth; p99)", "pages walked"]))
    L.append(row(["---"] * 10))
    grows = sorted({(k[1], int(k[2])) for k in results if isinstance(k, tuple) and k[0] == "grow"})

    def grown(f, level, kind, field):
        """A level's creation figure: the median of its rounds."""
        return median([g[kind][field] for g in results[("grow", f, str(level))]])

    def walk(f, level):
        """A level's listing (walked in the first round)."""
        return next(g["list"] for g in results[("grow", f, str(level))] if "list" in g)

    for f, level in grows:
        g = results[("grow", f, str(level))][0]
        lst = walk(f, level)
        L.append(row([f, f"{level:,}", f"{g['rows']:,}", f"{grown(f, level, 'native', 'per_sec'):.0f}",
                      f"{grown(f, level, 'native', 'p99_ms'):.2f}", f"{grown(f, level, 'tus', 'per_sec'):.0f}",
                      f"{grown(f, level, 'tus', 'p99_ms'):.2f}", f"{lst['first_page_ms']:.2f}",
                      f"{lst['page_ms']:.2f}; {lst['early_ms']:.2f}; {lst['late_ms']:.2f}; {lst['p99_page_ms']:.2f}",
                      str(lst["pages"])]))
    sweeps = [k for k in results if isinstance(k, tuple) and k[0] == "sweep"]
    def swept(k):
        """A flavour's sweep over its rounds: medians (the p99 ratio taken within each run, whose
        two windows are a minute apart), the highest peak RSS, the fewest progress samples."""
        runs = results[k]
        m = {f: median([x[f] for x in runs]) for f in ["rows", "rows_per_sec", "p99_busy_ms", "p99_idle_ms", "cpu",
                                                       "cpu_s3"]}
        m["ratio"] = median([x["p99_busy_ms"] / x["p99_idle_ms"] for x in runs])
        m["rss"] = max(x["rss"] for x in runs)
        m["progress_samples"] = min(x["progress_samples"] for x in runs)
        m["runs"] = len(runs)
        return m

    L.append("\n## A sweep of expired pending presigns (presigns at 8 connections beside it; medians of the rounds)\n")
    L.append(row(["flavour", "rows", "rows/s", "progress samples in /metrics", "peak RSS MiB", "p99 ms sweeping",
                  "p99 ms idle", "p99 sweeping / idle (each run's)", "CPU-s filedock", "CPU-s S3 server"]))
    L.append(row(["---"] * 10))
    for k in sweeps:
        sw = swept(k)
        L.append(row([k[1], f"{sw['rows']:,.0f}", f"{sw['rows_per_sec']:.0f}", str(sw["progress_samples"]),
                      f"{sw['rss']:.1f}", f"{sw['p99_busy_ms']:.2f}", f"{sw['p99_idle_ms']:.2f}",
                      " / ".join(f"{x['p99_busy_ms'] / x['p99_idle_ms']:.2f}" for x in results[k]),
                      f"{sw['cpu']:.1f}", f"{sw['cpu_s3']:.1f}" if k[1] != "embedded" and k[1] != "disk-postgres" else "–"]))

    sha_cost = 1024 * 1.048576 / sha_mbps  # CPU-s per GiB
    emb = next((s for s in fd_servers if s.name == "filedock-embedded"), None)
    scaled = [s for s in fd_servers if s.name in ("filedock-s3-postgres", "filedock-moto-postgres")]
    rus = med(("rustus", "create", "tus"), "per_sec")
    tusd = med(("peer", "create", "tus"), "per_sec")
    checks = []
    if emb:
        p = med((emb.name, "patches"), "ms_per_patch")
        checks.append((f"64 KiB tus PATCH ≤ dd's synced write + 0.25 ms", check(p <= dsync + 0.25,
                       f"{p:.3f} ms = floor {dsync:.3f} + {p - dsync:.3f}; rustus {med(('rustus', 'patches'), 'ms_per_patch'):.3f}, "
                       f"with fsync {med(('rustus-fsync', 'patches'), 'ms_per_patch'):.3f}")))
        for mode, what in [("native", "POST /v1/files"), ("tus", "tus PATCH")]:
            c = med((emb.name, "big", mode), "cpu_per_gib")
            checks.append((f"1 GiB {what}: CPU ≤ 1.5× SHA-256's ({1.5 * sha_cost:.2f} s/GiB)",
                           check(c <= 1.5 * sha_cost, f"{c:.2f} s/GiB = {c / sha_cost:.2f}×")))
        for kind in ["native", "cyberun", "tus"]:
            k = (emb.name, "create", kind)
            rate, p99 = med(k, "per_sec"), med(k, "p99_ms")
            ok = rate >= 1.5 * rus and rate >= 6 * tusd and p99 <= 5
            checks.append((f"{names[kind]}: ≥ 1.5× rustus, ≥ 6× @tus/server, p99 ≤ 5 ms",
                           check(ok, f"{rate:.0f}/s = {rate / rus:.2f}× rustus, {rate / tusd:.2f}× @tus/server, p99 {p99:.2f} ms")))
    for sc in scaled:
        on = "s3s-fs" if sc.name == "filedock-s3-postgres" else "moto"
        for kind, floor in [("native", 20_000), ("cyberun", 20_000), ("tus", 12_000)]:
            rate = med((sc.name, "create", kind), "per_sec")
            checks.append((f"S3+PG ({on}) {names[kind]} ≥ {floor:,}/s", check(rate >= floor, f"{rate:.0f}/s")))
        c = med((sc.name, "big", "native"), "cpu_per_gib")
        checks.append((f"S3+PG ({on}) 1 GiB upload: filedock's CPU ≤ 2× SHA-256's",
                       check(c <= 2 * sha_cost, f"{c:.2f} s/GiB = {c / sha_cost:.2f}×")))
    for s in (s for s in fd_servers if not s.only):
        r1, rc = med((s.name, "big", "native"), "rss"), max(med((s.name, "create", k), "rss") for k in names)
        r64 = med((s.name, "conc", "native"), "rss")
        checks.append((f"{s.label}: peak RSS ≤ 48 / 64 / 128 MiB (1 GiB; creations; 64 × 16 MiB)",
                       check(r1 <= 48 and rc <= 64 and r64 <= 128, f"{r1:.1f} / {rc:.1f} / {r64:.1f} MiB")))
    for f, level in grows:
        if level == 0:
            continue
        parts, ok = [], True
        for kind in ["native", "tus"]:
            r = grown(f, level, kind, "per_sec") / grown(f, 0, kind, "per_sec")
            p99 = grown(f, level, kind, "p99_ms") / grown(f, 0, kind, "p99_ms")
            ok &= r >= 0.8 and p99 <= 1.2
            parts.append(f"{kind} rate {r:.2f}×, p99 {p99:.2f}×")
        checks.append((f"{f}, {level:,} files: creations within 20% of the empty catalog", check(ok, "; ".join(parts))))
        # Against the smallest catalog that has a page to list (the empty one lists nothing).
        lst, first = walk(f, level), walk(f, min(l for _, l in grows if l > 0 and _ == f))
        flat = (lst["late_ms"] <= 1.5 * lst["early_ms"] + 0.5
                and lst["first_page_ms"] <= 1.5 * first["first_page_ms"] + 0.5)
        checks.append((f"{f}, {level:,} files: newest 100 and every page in constant time",
                       check(flat, f"newest {lst['first_page_ms']:.2f} ms (smallest: {first['first_page_ms']:.2f}); "
                                   f"pages {lst['early_ms']:.2f} → {lst['late_ms']:.2f} ms over {lst['pages']}")))
    for k in sweeps:
        sw = swept(k)
        ok = sw["rows_per_sec"] >= 10_000 and sw["progress_samples"] > 0 and sw["ratio"] <= 2
        checks.append((f"{k[1]}: sweep ≥ 10,000 rows/s, progress in /metrics, p99 ≤ 2× idle",
                       check(ok, f"{sw['rows_per_sec']:.0f} rows/s, {sw['progress_samples']} samples in progress, "
                                 f"p99 {sw['ratio']:.2f}× idle (median of {sw['runs']} runs), "
                                 f"peak RSS {sw['rss']:.1f} MiB")))
    L.append("\n## Targets (issue 26)\n")
    L.append(row(["target", "verdict"]))
    L.append(row(["---"] * 2))
    L.extend(row([name, verdict]) for name, verdict in checks)
    return L


if __name__ == "__main__":
    main()
