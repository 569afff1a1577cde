"""Many sites: N camera-worker processes posting alerts to one ``openlfr serve``.

    python bench/bench_workers.py [--db sqlite|postgresql|URL] [--workers 1,2,4,8] [--alerts 200]
                                  [--out bench/out/workers.json]

Each worker is a separate process with its own worker token (as a camera host at another
site would be), using the real client (``openlfr.worker.client.RemoteAlertSink``: HTTP,
idempotency keys, the disk buffer when the server fails). Every alert is a new track, so
every post inserts one alert row and one audit entry. The server is ``openlfr serve`` (one
uvicorn process) in a subprocess on a free loopback port, on SQLite (a file) or PostgreSQL
(``--db postgresql``: ``$OPENLFR_TEST_PG``, in a fresh schema dropped afterwards).

Per N: alerts/s over the whole run, latency of each ``record`` (post to committed) p50, p95,
p99 and max, alerts buffered (server answered 5xx or not at all), and the check that every
alert arrived exactly once (alerts in the database = alerts sent, one per idempotency key).
A second phase posts a tenth more alerts twice each under the same key (a reply lost on the
way): the second answer must be a duplicate with the same alert id, and no row is added. The limit is where alerts/s stops growing with N.

Also a library for tests/test_scale_workers.py (``server``, ``setup``, ``run_workers``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Iterator

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def database(kind: str, tmp: Path) -> Iterator[str]:
    """A fresh database URL: ``sqlite`` (a file in ``tmp``), ``postgresql`` ($OPENLFR_TEST_PG, a
    new schema) or a URL given as is."""
    if kind == "sqlite":
        yield f"sqlite:///{tmp / 'openlfr-workers.db'}"
    elif kind == "postgresql":
        from openlfr.store.testing import PG_ENV, pg_schema_url

        base = os.environ.get(PG_ENV)
        if not base:
            raise SystemExit(f"--db postgresql needs ${PG_ENV}")
        with pg_schema_url(base) as url:
            yield url
    else:
        yield kind


@contextmanager
def server(url: str, log_path: Path | None = None, timeout_s: float = 60.0, processes: int = 1) -> Iterator[tuple[str, subprocess.Popen]]:
    """``openlfr serve --db URL`` on a free loopback port, in a subprocess; stopped afterwards.
    ``processes`` > 1: uvicorn's own worker processes on the app factory instead
    (``uvicorn openlfr.server:create_app --factory --workers N``, the database from ``$OPENLFR_DB``)."""
    import urllib.request

    port = free_port()
    out = open(log_path, "wb") if log_path else subprocess.DEVNULL
    if processes > 1:
        cmd = [sys.executable, "-m", "uvicorn", "openlfr.server:create_app", "--factory", "--workers", str(processes),
               "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"]
    else:
        cmd = [sys.executable, "-c", "from openlfr.cli import main; main()", "serve", "--db", url, "--host", "127.0.0.1",
               "--port", str(port), "--log-level", "warning"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OPENLFR_DB": url}
    proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"openlfr serve exited with {proc.returncode}" + (f" (log: {log_path})" if log_path else ""))
            try:
                with urllib.request.urlopen(base + "/openapi.json", timeout=2):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError("openlfr serve did not answer in time") from None
                time.sleep(0.2)
        yield base, proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if log_path:
            out.close()


def setup(url: str, n_workers: int) -> tuple[int, list[str], object]:
    """A governed world on ``url`` with one active deployment of ``n_workers`` cameras (real
    clock: it runs for four hours from now) and one worker token per camera. Returns
    (deployment id, tokens, world)."""
    from openlfr.web.security import Tokens
    from openlfr.governance.clock import TestClock
    from openlfr.governance.testing import make_world

    clock = TestClock(datetime.now(timezone.utc) - timedelta(seconds=5))
    w = make_world(url, clock, subjects=4)
    cams = [f"cam-{i:03d}" for i in range(n_workers)]
    d = w.active_deployment(start_in=timedelta(seconds=1), length=timedelta(hours=4), cameras=cams)
    tokens = [Tokens(w.gov).create(w["operator"], "worker", f"site {i}", deployment_id=d)[0] for i in range(n_workers)]
    return d, tokens, w


def run_workers(base: str, deployment: int, tokens: list[str], subjects: list[int], alerts: int, tmp: Path,
                resend: float = 0.1, timeout_s: float = 300.0) -> list[dict]:
    """Start one worker process per token, all posting at the same moment; their results."""
    start_at = time.time() + 1.5 + 0.3 * len(tokens)  # after every process has imported openlfr
    procs = []
    for i, tok in enumerate(tokens):
        cmd = [sys.executable, str(Path(__file__).resolve()), "worker", "--server", base, "--deployment", str(deployment),
               "--camera", f"cam-{i:03d}", "--alerts", str(alerts), "--subjects", ",".join(map(str, subjects)),
               "--start-at", repr(start_at), "--buffer", str(tmp / f"buffer-{i}"), "--resend", str(resend)]
        procs.append(subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                      env={**os.environ, "OPENLFR_WORKER_TOKEN": tok}))
    results = []
    for p in procs:
        out, err = p.communicate(timeout=timeout_s)
        if p.returncode != 0:
            raise RuntimeError(f"worker failed ({p.returncode}): {err.decode()[-2000:]}")
        results.append(json.loads(out.decode().strip().splitlines()[-1]))
    return results


def worker_main(args) -> int:
    """One worker process: ``alerts`` alerts on its camera, each a new track; prints JSON."""
    import numpy as np

    from openlfr.worker.client import RemoteAlertSink, WorkerClient, alert_payload
    from openlfr.governance.testing import FAKE_JPEG, template
    from openlfr.live.sink import AlertRecord

    client = WorkerClient(args.server, os.environ["OPENLFR_WORKER_TOKEN"], timeout=30)
    sink = RemoteAlertSink(client, args.deployment, Path(args.buffer), retry_s=0.05, max_retry_s=0.5)
    subjects = [int(s) for s in args.subjects.split(",")]
    tpl = template(7)
    rng = np.random.default_rng(abs(hash(args.camera)) % (2**32))
    time.sleep(max(0.0, args.start_at - time.time()))
    lat, ids, buffered = [], [], 0
    t0 = time.perf_counter()

    def make(k: int) -> AlertRecord:
        return AlertRecord(camera=args.camera, track=k + 1, subject_id=subjects[k % len(subjects)],
                           distance=float(0.3 + 0.2 * rng.random()), distances=(0.4, 0.7), frame=k, media_time=0.04 * k,
                           crop=FAKE_JPEG + k.to_bytes(4, "little"), template=tpl)

    for k in range(args.alerts):
        t = time.perf_counter()
        r = sink.record(make(k))
        lat.append(time.perf_counter() - t)
        if r is None:
            buffered += 1
        else:
            ids.append(int(r))
    left = sink.close(flush_timeout_s=60)
    wall = time.perf_counter() - t0
    # a reply lost on the way: the same key delivered again answers the same alert id, as a duplicate
    dup_ok, dup_n = True, 0
    for k in range(args.alerts, args.alerts + int(args.alerts * args.resend)):
        body = alert_payload(make(k))
        first = client.call("POST", "/api/worker/alerts", body)
        again = client.call("POST", "/api/worker/alerts", body)
        dup_n += 1
        dup_ok &= first["duplicate"] is False and again["duplicate"] is True and again["alert_id"] == first["alert_id"]
    lat_ms = np.array(lat) * 1000
    print(json.dumps({
        "camera": args.camera, "alerts": args.alerts, "wall_s": wall, "committed_ids": ids, "buffered": buffered,
        "left_in_buffer": left, "delivered_from_buffer": sink.delivered, "refused": sink.refused,
        "latency_ms": lat_ms.tolist(), "resent": dup_n, "resend_duplicates_ok": bool(dup_ok),
    }))
    return 0


def summarise(results: list[dict], wall_s: float) -> dict:
    import numpy as np

    lat = np.concatenate([np.asarray(r["latency_ms"]) for r in results]) if results else np.zeros(0)
    total = sum(r["alerts"] for r in results)
    return {
        "workers": len(results), "alerts": total, "wall_s": round(wall_s, 3), "alerts_per_s": round(total / wall_s, 1),
        "latency_ms": {p: round(float(np.percentile(lat, q)), 2) for p, q in (("p50", 50), ("p95", 95), ("p99", 99))}
        | {"max": round(float(lat.max()), 2)},
        "buffered": sum(r["buffered"] for r in results), "left_in_buffer": sum(r["left_in_buffer"] for r in results),
        "refused": sum(r["refused"] for r in results),
        "resend_duplicates_ok": all(r["resend_duplicates_ok"] for r in results),
    }


def check_exactly_once(world, deployment: int, results: list[dict]) -> dict:
    """Alerts in the database against what the workers sent: one row per (camera, track), none updated."""
    from sqlalchemy import select

    from openlfr.store.models import AlertRow

    with world.gov.db.transaction() as s:
        rows = s.execute(select(AlertRow.camera, AlertRow.track, AlertRow.updates).where(AlertRow.deployment_id == deployment)).all()
    keys = [(c, str(t)) for c, t, _ in rows]
    sent = sum(r["alerts"] + r["resent"] for r in results)
    ids = [i for r in results for i in r["committed_ids"]]
    return {"sent": sent, "in_database": len(rows), "distinct_tracks": len(set(keys)),
            "updated_rows": sum(1 for *_, u in rows if u), "ids_distinct": len(ids) == len(set(ids)),
            "exactly_once": len(rows) == sent == len(set(keys)) and not any(u for *_, u in rows)}


def bench(kind: str, counts: list[int], alerts: int, out: Path, processes: int = 1) -> dict:
    import tempfile

    res = {"machine": {"cores": os.cpu_count(), "python": platform.python_version(), "load_avg_at_start": os.getloadavg()},
           "db": kind, "server_processes": processes, "alerts_per_worker": alerts, "runs": []}
    for n in counts:
        with tempfile.TemporaryDirectory(prefix="openlfr-workers-") as t:
            tmp = Path(t)
            with database(kind, tmp) as url:
                d, tokens, w = setup(url, n)
                with server(url, tmp / "server.log", processes=processes) as (base, _):
                    t0 = time.time()
                    results = run_workers(base, d, tokens, w.subjects, alerts, tmp)
                    wall = max(r["wall_s"] for r in results)
                row = summarise(results, wall) | check_exactly_once(w, d, results)
                row["run_s"] = round(time.time() - t0, 1)
                print(json.dumps(row), flush=True)
                res["runs"].append(row)
                w.gov.db.dispose()
    best = max(res["runs"], key=lambda r: r["alerts_per_s"])
    res["limit"] = {"alerts_per_s": best["alerts_per_s"], "at_workers": best["workers"]}
    res["machine"]["load_avg_at_end"] = os.getloadavg()
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=2) + "\n")
    return res


def head_lock_ceiling(pg_url: str, clients: int = 4, seconds: float = 5.0) -> dict:
    """PostgreSQL alone, the pattern every alert transaction has: lock the one audit-head row
    (``SELECT ... FOR UPDATE``), insert an alert row and an audit row, move the head, commit
    (synchronous). ``clients`` connections in threads (psycopg releases the GIL), in a fresh
    schema: transactions/s, i.e. the ceiling that one audit chain puts on alerts/s here."""
    import threading

    import psycopg
    from sqlalchemy.engine import make_url

    from openlfr.store.testing import pg_schema_url

    with pg_schema_url(pg_url) as url:
        u = make_url(url)
        opts = dict(host=u.host or "localhost", port=u.port or 5432, user=u.username, password=u.password,
                    dbname=u.database, options=u.query.get("options"))
        with psycopg.connect(**opts, autocommit=True) as c:
            c.execute("CREATE TABLE head (id int PRIMARY KEY, seq bigint, hash text)")
            c.execute("INSERT INTO head VALUES (1, 0, '')")
            c.execute("CREATE TABLE alerts (id bigserial PRIMARY KEY, camera text, track int, crop bytea)")
            c.execute("CREATE TABLE audit (seq bigint PRIMARY KEY, details text, hash text)")
        done = [0] * clients
        stop = threading.Event()

        def client(i: int) -> None:
            with psycopg.connect(**opts) as c:
                k = 0
                while not stop.is_set():
                    with c.transaction():
                        c.execute("INSERT INTO alerts (camera, track, crop) VALUES (%s, %s, %s)", (f"c{i}", k, b"x" * 2000))
                        seq = c.execute("SELECT seq FROM head WHERE id = 1 FOR UPDATE").fetchone()[0] + 1
                        c.execute("INSERT INTO audit VALUES (%s, %s, %s)", (seq, "{}", "h"))
                        c.execute("UPDATE head SET seq = %s, hash = %s WHERE id = 1", (seq, "h"))
                    k += 1
                    done[i] += 1

        threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
        t0 = time.perf_counter()
        for t in threads:
            t.start()
        time.sleep(seconds)
        stop.set()
        for t in threads:
            t.join()
        wall = time.perf_counter() - t0
    return {"clients": clients, "transactions": sum(done), "tx_per_s": round(sum(done) / wall, 1)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd")
    w = sub.add_parser("worker", help="(internal) one worker process")
    w.add_argument("--server", required=True)
    w.add_argument("--deployment", type=int, required=True)
    w.add_argument("--camera", required=True)
    w.add_argument("--alerts", type=int, required=True)
    w.add_argument("--subjects", required=True)
    w.add_argument("--start-at", type=float, default=0.0)
    w.add_argument("--buffer", required=True)
    w.add_argument("--resend", type=float, default=0.1)
    ap.add_argument("--db", default="sqlite", help="sqlite, postgresql ($OPENLFR_TEST_PG) or a database URL")
    ap.add_argument("--workers", default="1,2,4,8")
    ap.add_argument("--alerts", type=int, default=200, help="alerts per worker")
    ap.add_argument("--server-processes", type=int, default=1, help="uvicorn worker processes of the server")
    ap.add_argument("--out", type=Path, default=None)
    c = sub.add_parser("ceiling", help="PostgreSQL alone: the audit-head lock's transactions/s ($OPENLFR_TEST_PG)")
    c.add_argument("--clients", default="1,4,16")
    c.add_argument("--seconds", type=float, default=5.0)
    args = ap.parse_args(argv)
    if args.cmd == "worker":
        return worker_main(args)
    if args.cmd == "ceiling":
        from openlfr.store.testing import PG_ENV

        rows = [head_lock_ceiling(os.environ[PG_ENV], int(n), args.seconds) for n in args.clients.split(",")]
        print(json.dumps(rows, indent=2))
        return 0
    name = args.db if args.db in ("sqlite", "postgresql") else "url"
    suffix = f"_x{args.server_processes}" if args.server_processes > 1 else ""
    out = args.out or REPO / "bench" / "out" / f"workers_{name}{suffix}.json"
    res = bench(args.db, [int(x) for x in args.workers.split(",")], args.alerts, out, args.server_processes)
    print(json.dumps(res, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
