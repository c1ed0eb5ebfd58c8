"""Cost as the work grows (issue 26), for bench/run.py: creations and listing with 10^4..10^6
files already in the catalog, a sweep of many expired rows, and the memory of open tus uploads.

Rows are written straight into the catalog before filedock serves (SQLite through Python's
sqlite3, PostgreSQL through psql), in the shapes filedock writes them: ready assets for the
growth curves, expired pending presigns for the sweep. Each level runs on a fresh instance, so
every level starts from the same state but for the rows it was given.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import sqlite3
import statistics
import subprocess
import threading
import time

COLUMNS = ("id, project, workspace, backend, storage_key, name, size, declared_type, detected_type, extension, "
           "sha256, created_by, agent, credential_id, class, status, policy, created_at, completed_at, expires_at, "
           "deleted_at, origin, reason")


def now_ms() -> int:
    return int(time.time() * 1000)


def seed_sql(engine: str, backend: str, tag: str, start: int, end: int, kind: str, expires_at: int) -> str:
    """One INSERT of rows start..end (inclusive): `ready` assets, or `pending` presigns that
    expire at `expires_at`. Ids are 32 hex digits that sort below every id filedock makes."""
    t = now_ms()
    if kind == "ready":
        cls, status, completed, expires = "'asset'", "'ready'", str(t - 3_600_000), "NULL"
    else:
        cls, status, completed, expires = "'input'", "'pending'", "NULL", str(expires_at)
    sha = "'" + "ab" * 32 + "'"
    if engine == "sqlite":
        gen = f"WITH RECURSIVE g(n) AS (SELECT {start} UNION ALL SELECT n + 1 FROM g WHERE n < {end}) "
        ident, src = f"printf('{tag}%024x', n)", "g"
        key = f"'seed/{tag}/' || n"
    else:
        gen = ""
        ident, src = f"'{tag}' || lpad(to_hex(n), 24, '0')", f"generate_series({start}, {end}) AS n"
        key = f"'seed/{tag}/' || n"
    return (f"{gen}INSERT INTO files ({COLUMNS}) SELECT {ident}, 'bench', NULL, '{backend}', {key}, 'seed.bin', 1, "
            f"'application/octet-stream', 'application/octet-stream', 'bin', {sha}, NULL, NULL, NULL, {cls}, "
            f"{status}, 'native', {t - 3_600_000}, {completed}, {expires}, NULL, NULL, NULL FROM {src}")


def seed(srv, tag: str, count: int, kind: str, expires_at: int = 0) -> float:
    """Writes `count` rows into the server's catalog (the server not running); returns seconds."""
    t0 = time.monotonic()
    step = 200_000
    for start in range(1, count + 1, step):
        end = min(count, start + step - 1)
        if srv.db_url:
            sql = seed_sql("postgres", srv.backend, tag, start, end, kind, expires_at)
            subprocess.run(["psql", srv.db_url, "-q", "-v", "ON_ERROR_STOP=1", "-c", sql], check=True,
                           capture_output=True)
        else:
            db = sqlite3.connect(srv.data_dir / "filedock.db")
            db.execute("PRAGMA busy_timeout = 10000")
            with db:
                db.execute(seed_sql("sqlite", srv.backend, tag, start, end, kind, expires_at))
            db.close()
    if srv.db_url:
        # A catalog that grew to this size over time has been vacuumed and checkpointed as it
        # grew. Rows put in at once leave that work to run during the measurement: autovacuum
        # (seen in 6 and 7 of 10 one-second samples of a 10 s run after 10⁶ rows), and the
        # checkpoints the seed's WAL sets off. With 10⁶ rows, presign p99 over three rounds:
        # 10.6 / 10.0 / 6.9 ms vacuumed only, 5.9 / 5.8 / 9.7 ms vacuumed and checkpointed.
        for sql in ["VACUUM (ANALYZE) files", "CHECKPOINT"]:
            subprocess.run(["psql", srv.db_url, "-q", "-v", "ON_ERROR_STOP=1", "-c", sql],
                           check=True, capture_output=True)
    return time.monotonic() - t0


def count_files(srv) -> int:
    if srv.db_url:
        out = subprocess.run(["psql", srv.db_url, "-tA", "-c", "SELECT count(*) FROM files"], check=True,
                             capture_output=True, text=True).stdout
        return int(out.strip())
    db = sqlite3.connect(srv.data_dir / "filedock.db")
    try:
        return db.execute("SELECT count(*) FROM files").fetchone()[0]
    finally:
        db.close()


class Client:
    """One keep-alive connection to a server."""

    def __init__(self, srv):
        host, port = srv.base.split("//")[1].split(":")
        self.conn = http.client.HTTPConnection(host, int(port), timeout=60)
        self.headers = {"Authorization": f"Bearer {srv.key}"} if srv.key else {}

    def call(self, method: str, path: str, headers: dict | None = None, body=None):
        self.conn.request(method, path, body=body, headers=self.headers | (headers or {}))
        resp = self.conn.getresponse()
        data = resp.read()
        return resp.status, resp.getheaders(), data

    def close(self):
        self.conn.close()


def listing(srv, max_pages: int) -> dict:
    """The newest 100 files (50 times), then every page to the end (at most `max_pages`)."""
    c = Client(srv)
    first = []
    for _ in range(50):
        t0 = time.perf_counter()
        status, _, _ = c.call("GET", "/v1/files?limit=100")
        first.append((time.perf_counter() - t0) * 1000)
        if status != 200:
            raise SystemExit(f"listing on {srv.label}: {status}")
    pages, cursor, listed = [], None, 0
    while len(pages) < max_pages:
        path = "/v1/files?limit=100" + (f"&cursor={cursor}" if cursor else "")
        t0 = time.perf_counter()
        status, _, body = c.call("GET", path)
        pages.append((time.perf_counter() - t0) * 1000)
        page = json.loads(body)
        listed += len(page["files"])
        cursor = page.get("next_cursor")
        if not cursor:
            break
    c.close()
    tenth = max(1, len(pages) // 10)
    return {"first_page_ms": statistics.median(first), "pages": len(pages), "listed": listed,
            "page_ms": statistics.median(pages), "early_ms": statistics.median(pages[:tenth]),
            "late_ms": statistics.median(pages[-tenth:]),
            "p99_page_ms": sorted(pages)[int(len(pages) * 0.99) - 1] if len(pages) > 1 else pages[0]}


def metric(srv, name: str, label: str) -> float:
    c = Client(srv)
    try:
        _, _, body = c.call("GET", "/metrics")
    finally:
        c.close()
    for line in body.decode().splitlines():
        if line.startswith(name + "{") and label in line:
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def settle(srv, timeout: float = 600) -> None:
    """Waits for the start-up scan (it reads every row) to finish, so what follows measures the
    steady state."""
    deadline = time.monotonic() + timeout
    while metric(srv, "filedock_job_runs_total", 'job="startup-scan"') < 1:
        if time.monotonic() > deadline:
            raise SystemExit(f"the start-up scan of {srv.label} did not finish in {timeout} s")
        time.sleep(0.2)


def wrk_p99(srv, work, secs: int, conns: int) -> dict:
    """Presign creations at `conns` connections for `secs`: rate and p99 (ms)."""
    script = work / f"wrk-sweep-{srv.name}.lua"
    body = json.dumps({"name": "a.bin", "size": 1024})
    script.write_text(f'wrk.method = "POST"\nwrk.body = {json.dumps(body)}\n'
                      f'wrk.headers["Authorization"] = "Bearer {srv.key}"\n'
                      'wrk.headers["Content-Type"] = "application/json"\n')
    res = subprocess.run(["wrk", "-t", "1", "-c", str(conns), "-d", f"{secs}s", "--latency", "-s", str(script),
                          srv.base + "/v1/uploads"], capture_output=True, text=True, check=True)
    m = re.search(r"^\s+99%\s+([\d.]+)(us|ms|s)\s*$", res.stdout, re.MULTILINE)
    p99 = float(m.group(1)) * {"us": 1e-3, "ms": 1.0, "s": 1e3}[m.group(2)]
    total = int(re.search(r"(\d+) requests in", res.stdout).group(1))
    return {"p99_ms": p99, "per_sec": total / secs}


def sweep(srv, work, rows: int, load_secs: int, expires_at_ms: int) -> dict:
    """`rows` pending presigns that expire at `expires_at_ms`, on a server started before then:
    presign p99 idle first, then while the sweep runs; rows/s from the progress `/metrics`
    shows (sampled every 0.2 s, the sweeper looking every second), and peak RSS."""
    settle(srv)
    idle = wrk_p99(srv, work, load_secs, 8)
    if now_ms() >= expires_at_ms:
        raise SystemExit(f"{srv.label}: the rows expired before the idle measurement ended; seed them later")
    time.sleep(max(0.0, (expires_at_ms - now_ms()) / 1000))
    srv.reset_peak()
    helpers = [h.pid for h in srv.helpers]
    cpu0 = (srv.cpu(), sum(proc_cpu(p) for p in helpers))
    samples = []
    done = threading.Event()

    def watch():
        while not done.is_set():
            samples.append((time.monotonic(), metric(srv, "filedock_swept_total", 'kind="files"')))
            if samples[-1][1] >= rows:
                done.set()
                break
            time.sleep(0.2)

    t = threading.Thread(target=watch)
    t.start()
    busy = wrk_p99(srv, work, load_secs, 8)
    t.join(timeout=3600)
    done.set()
    cpu = (srv.cpu() - cpu0[0], sum(proc_cpu(p) for p in helpers) - cpu0[1])
    if not samples or samples[-1][1] < rows:
        raise SystemExit(f"the sweep on {srv.label} did not finish: {samples[-3:]}")
    # From the last look that saw nothing swept yet to the first that saw all of it.
    t_start = max((ts for ts, n in samples if n == 0), default=samples[0][0])
    secs = samples[-1][0] - t_start
    progress_samples = sum(1 for _, n in samples if 0 < n < rows)
    return {"rows": rows, "rows_per_sec": rows / secs, "secs": secs, "progress_samples": progress_samples,
            "rss": srv.peak_mib(), "p99_busy_ms": busy["p99_ms"], "p99_idle_ms": idle["p99_ms"],
            "busy_overlap": min(1.0, secs / load_secs), "cpu": cpu[0], "cpu_s3": cpu[1]}


def proc_cpu(pid: int) -> float:
    """CPU-seconds a process used so far (all threads)."""
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def open_uploads(srv, count: int) -> dict:
    """Resident memory per open tus upload: `count` uploads created and left open."""
    c = Client(srv)

    def rss_kib() -> int:
        for line in open(f"/proc/{srv.pid}/status"):
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        return 0

    # Warm up (connection, caches, the allocator's first arenas), then measure.
    for _ in range(200):
        c.call("POST", srv.tus_path, {"Tus-Resumable": "1.0.0", "Upload-Length": "1024"})
    time.sleep(0.5)
    before = rss_kib()
    for i in range(count):
        status, _, _ = c.call("POST", srv.tus_path, {"Tus-Resumable": "1.0.0", "Upload-Length": "1024"})
        if status != 201:
            raise SystemExit(f"tus creation {i} on {srv.label}: {status}")
    time.sleep(0.5)
    after = rss_kib()
    c.close()
    return {"count": count, "bytes_each": (after - before) * 1024 / count}
